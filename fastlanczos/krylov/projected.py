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
    return y, theta
