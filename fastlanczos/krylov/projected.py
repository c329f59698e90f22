"""The small problem: y = f(T) e_1 from each column's tridiagonal, in float64."""

import torch

from .tridiag import tridiag_eigh_unchecked, with_lapack_fallback


def solve_projected(fn, alpha, beta, steps, scale, repair=False):
    """y = f(T) e_1 and the Ritz values for each column's leading steps x steps block.

    Columns have different sizes; each T is padded to the common size with a decoupled block
    (off-diagonal 0, diagonal = the column's scale, a positive value so f stays finite). Its
    eigenvectors have zero first components, so it adds nothing to y and its eigenvalues
    are never the minimum. repair=True hands the matrices the compiled QL could not solve
    to LAPACK (one read from the device)."""
    jj = alpha.shape[1]
    idx = torch.arange(jj, device=alpha.device)
    real = idx < steps.unsqueeze(1)
    pad = torch.where(scale > 0, scale, 1.0).unsqueeze(1)
    a = torch.where(real & torch.isfinite(alpha), alpha, pad)
    b = torch.where(real[:, 1:] & torch.isfinite(beta), beta, 0.0)
    theta, S = tridiag_eigh_unchecked(a, b)
    if repair:
        theta, S = with_lapack_fallback(a, b, theta, S)
    s1 = S[:, 0, :]
    weights = torch.where(s1 != 0, fn(theta) * s1, 0.0)
    y = torch.where(real, (S @ weights.unsqueeze(2)).squeeze(2), 0.0)
    last = S.gather(1, (steps - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, jj)).squeeze(1)
    return y, theta, residual_term(fn, theta, s1, last)


def residual_term(fn, theta, first, last):
    """|sum_i S_ji S_1i f[theta_i, theta_min]| per column (j the column's last step): times
    beta_j ||z||, the error of x_j if theta_min were lambda_min (module doc of stopping.py).
    Exactly: x* - x_j = -||z|| beta_j int c_j(t) (A + t)^-1 v_{j+1} dmu(t) for f(x) = int
    (x + t)^-1 dmu(t), with c_j(t) = e_j^T (T + t)^-1 e_1 of one sign in t, so ||(A + t)^-1||
    <= 1 / (lambda_min + t) bounds it by this sum with f[theta_i, lambda_min]; the same holds
    for log and sqrt (complete Bernstein functions)."""
    low = theta.min(dim=1, keepdim=True).values
    d = theta - low
    # Ritz values in a cluster sit within 1e-9 of theta_min: there the quotient loses eps/d,
    # and the sum, which cancels to 1e-7 of its largest terms, stalled at ~30x the error
    # (measured). Below d = eps^(1/3) theta_min f[theta_i, theta_min] is f' at the midpoint
    # (error d^2), by a central difference of step eps^(1/3) theta_min (error eps^(2/3)).
    step = torch.finfo(theta.dtype).eps ** (1 / 3) * low.abs()
    close = d.abs() < step
    mid = low + d / 2
    quotient = (fn(theta) - fn(low)) / torch.where(close, 1.0, d)
    slope = (fn(mid + step) - fn(mid - step)) / (2 * step)
    dd = torch.where(close, slope, quotient)
    return (last * first * dd).sum(dim=1).abs()
