"""Batched symmetric tridiagonal eigen-solve, always in float64.

The compiled QL kernel (tql2 family) runs when the extension is built for the device;
otherwise the tridiagonal is formed densely and handed to torch.linalg.eigh (LAPACK /
cuSOLVER), which is the reference the kernel is tested against.
"""

import torch

from ..errors import LanczosInputError, NonFiniteError, TridiagonalConvergenceError
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
    for name, t in (("alpha", alpha), ("beta", beta)):
        if t.is_complex() or not (t.is_floating_point() or t.dtype in _INTEGER):
            raise LanczosInputError(f"tridiag_eigh: {name} must be real (a symmetric "
                                    f"tridiagonal), got {t.dtype}")
    if not (torch.isfinite(alpha).all() and torch.isfinite(beta).all()):
        raise NonFiniteError("tridiag_eigh: alpha or beta holds NaN or inf")
    alpha, beta = alpha.double(), beta.double()
    try:
        solved = tridiag_eigh_unchecked(alpha, beta)
    except torch.linalg.LinAlgError as err:  # the torch path: LAPACK itself gave up
        raise TridiagonalConvergenceError(
            f"the eigen-solver did not converge on a tridiagonal of the batch (k = "
            f"{alpha.shape[0]}, size {alpha.shape[1]}): {err}") from err
    theta, S = with_lapack_fallback(alpha, beta, *solved)
    return (theta[0], S[0]) if single else (theta, S)


_INTEGER = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)


def with_lapack_fallback(alpha, beta, theta, S):
    """Replace the matrices the compiled QL left unsolved (NaN) by LAPACK's answer; reads the
    device once. A matrix LAPACK cannot solve either is named in the error."""
    failed = torch.isnan(theta).any(dim=1).nonzero().flatten().tolist()
    if not failed:
        return theta, S
    theta, S = theta.clone(), S.clone()
    for c in failed:
        try:
            theta[c], S[c] = torch.linalg.eigh(dense_tridiagonal(alpha[c], beta[c]))
        except torch.linalg.LinAlgError as err:
            raise TridiagonalConvergenceError(
                f"the eigen-solver did not converge on tridiagonal {c} (of {alpha.shape[0]}, "
                f"size {alpha.shape[1]}), neither the compiled QL nor LAPACK: {err}") from err
    return theta, S


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
