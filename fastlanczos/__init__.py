"""fastlanczos: sample N(theta_hat, A^{-1}) by Lanczos, A reached only through products.

    x = fastlanczos.inv_sqrt_apply(hvp, z, m)      # (A + shift I)^{-1/2} z
"""

import torch as _torch

from .backend import backend_info
from .errors import LanczosInputError, NonFiniteError, NotPositiveDefiniteError
from .funm import FunmInfo, funm_apply, inv_sqrt_apply
from .lanczos import LanczosResult, lanczos_full, lanczos_three_term
from .operator import as_block_matvec
from .tridiag import tridiag_eigh
from .validate import check_arguments

__version__ = "0.1.0"


def lanczos(hvp, z, m, *, shift=0.0, reorth="full"):
    """The Lanczos basis and tridiagonal of A + shift I from z ((n,) or (k, n)).

    Returns LanczosResult(basis (k, m, n), alpha (k, m), beta (k, m-1), residual (k, n),
    steps (k,)) with A V^T = V^T T + residual e_m^T; the k axis is dropped for 1-D z.
    Columns that reach an invariant subspace stop early (see `steps`)."""
    z2 = check_arguments(z, m, None, shift, reorth, 1)
    matvec = as_block_matvec(hvp, z, float(shift))
    if reorth == "full":
        result, _ = lanczos_full(matvec, z2, m, None, None)
    else:
        result, _ = lanczos_three_term(matvec, z2, m, None, None, keep_basis=True)
    return LanczosResult(*(t[0] for t in result)) if z.dim() == 1 else result


__all__ = [
    "FunmInfo", "LanczosInputError", "LanczosResult", "NonFiniteError",
    "NotPositiveDefiniteError", "backend_info", "funm_apply", "inv_sqrt_apply", "lanczos",
    "tridiag_eigh",
]
del _torch
