"""Batched symmetric tridiagonal eigen-solve, always in float64.

The compiled QL kernel (tql2 family) runs when the extension is built for the device;
otherwise the tridiagonal is formed densely and handed to torch.linalg.eigh (LAPACK /
cuSOLVER), which is the reference the kernel is tested against.
"""

import torch

from ..errors import LanczosInputError, NonFiniteError
from . import ops
from .backend import use_extension


def tridiag_eigh(alpha: torch.Tensor, beta: torch.Tensor):
    """Eigen-decompose the tridiagonal(s) with diagonal alpha (k, m) and off-diagonal beta (k, m-1).

    Computes in float64 and returns (eigenvalues (k, m) ascending, eigenvectors (k, m, m)),
    like torch.linalg.eigh; 1-D inputs (m,), (m-1,) give unbatched results.
    """
    single = alpha.dim() == 1
    if single:
        alpha, beta = alpha.unsqueeze(0), beta.unsqueeze(0)
    if alpha.dim() != 2 or beta.dim() != 2 or beta.shape != (alpha.shape[0], alpha.shape[1] - 1):
        raise LanczosInputError(f"tridiag_eigh needs alpha (k, m) and beta (k, m-1); got "
                                f"{tuple(alpha.shape)} and {tuple(beta.shape)}")
    if alpha.shape[1] < 1:
        raise LanczosInputError("tridiag_eigh needs m >= 1")
    if alpha.device != beta.device:
        raise LanczosInputError(f"alpha is on {alpha.device} but beta on {beta.device}")
    if not (torch.isfinite(alpha).all() and torch.isfinite(beta).all()):
        raise NonFiniteError("tridiag_eigh: alpha or beta holds NaN or inf")
    theta, S = tridiag_eigh_unchecked(alpha.double(), beta.double())
    if torch.isnan(theta).any():
        raise ArithmeticError("tridiag_eigh: the QL iteration did not converge")
    return (theta[0], S[0]) if single else (theta, S)


def tridiag_eigh_unchecked(alpha: torch.Tensor, beta: torch.Tensor):
    """float64 (k, m), (k, m-1) -> (theta, S) with no host synchronization on the compiled path."""
    limit = ops.CPU_QL_MAX_M if alpha.device.type == "cpu" else ops.TRIDIAG_MAX_M
    if use_extension(alpha.device) and alpha.shape[1] <= limit:
        return ops.tridiag_eigh(alpha.contiguous(), beta.contiguous())
    return torch.linalg.eigh(dense_tridiagonal(alpha, beta))


def dense_tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    T = torch.diag_embed(alpha)
    if beta.shape[-1] > 0:
        T = T + torch.diag_embed(beta, offset=1) + torch.diag_embed(beta, offset=-1)
    return T
