"""The small problem: y = f(T) e_1 from each column's tridiagonal, in float64."""

import torch

from .radau import radau_estimate
from .tridiag import tridiag_eigh_unchecked, with_lapack_fallback


def solve_projected(fn, alpha, beta, steps, scale, repair=False, bound=None, beta_next=None):
    """(y, theta, residual term, attainable term, Gauss-Radau estimate): y = f(T) e_1 and
    the Ritz values for each column's leading steps x steps block; the estimate (krylov/
    radau.py) only where a lower bound of the spectrum is given (else None), with beta_next
    (k,) each column's beta_j.

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
    radau = None if bound is None else radau_estimate(fn, a, b, steps, scale, theta, S, last,
                                                      y, beta_next, bound)
    return y, theta, residual_term(fn, theta, s1, last), attainable_term(fn, theta, s1, y), radau


def attainable_term(fn, theta, first, y):
    """theta_max sum_i w_i^2 |f'(theta_i)| / ||y|| per column (w = S^T e_1, y = f(T) e_1):
    times eps of the vectors' dtype, the relative accuracy x can attain at all (stopping.py,
    "the floor of the dtype"). The computed T is the exact projection of an operator off by
    dA, ||dA|| ~ eps ||A|| (the products' and the basis's rounding). To first order
    (Daleckii-Krein) dA moves f(A) z by sum_ik q_i f[l_i, l_k] dA_ik (q_k' z) in A's
    eigenbasis (l, q); for entries of random sign, eps l_max / sqrt(n) each, its expected
    size is eps l_max (mean_i sum_k f[l_i, l_k]^2 (q_k' z)^2)^(1/2). With the Ritz values for
    the eigenvalues, weighted by z's spectral measure w^2 (near uniform for a random z), that
    is theta_max (sum_ik w_i^2 w_k^2 f[theta_i, theta_k]^2)^(1/2) (O(j^2)); |f[a, b]| <=
    (|f'(a)| |f'(b)|)^(1/2) for inv_sqrt, inv, sqrt and log (the geometric mean is below the
    means these divided differences are made of) bounds it by this O(j) sum, within 1.25x of
    it on every spectrum measured. (max |f'| sum_k w_k^2 would be 10-100x larger where
    little of z lies near theta_min: four outliers at the low end.) Padding has w = 0."""
    real = first != 0
    top = torch.where(real, theta, 0.0).amax(dim=1)
    step = torch.finfo(theta.dtype).eps ** (1 / 3) * theta.abs()
    slope = ((fn(theta + step) - fn(theta - step)) / (2 * step)).abs()  # |f'(theta_i)|
    spread = torch.where(real, first * first * slope, 0.0).sum(dim=1)
    size = torch.linalg.vector_norm(y, dim=1)
    return torch.where(size > 0, top * spread / size, 0.0).nan_to_num(0.0)


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
