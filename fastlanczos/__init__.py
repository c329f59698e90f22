"""fastlanczos: sample N(theta_hat, A^{-1}) by Lanczos, A reached only through products.

    x = fastlanczos.inv_sqrt_apply(hvp, z, m)      # (A + shift I)^{-1/2} z
"""

from .adapters import adapt
from .backend import backend_info
from .curvature import (
    ef_diagonal,
    ef_vp,
    ggn_diagonal,
    ggn_vp,
    hessian_vp,
    hutchinson_diagonal,
)
from .errors import LanczosInputError, NonFiniteError, NotPositiveDefiniteError
from .funm import FunmInfo, funm_apply, inv_sqrt_apply
from .gmrf import sample_gaussian
from .lanczos import LanczosResult, lanczos_full, lanczos_three_term
from .laplace import LaplacePosterior, RegressionPredictive, sample_parameters
from .operator import as_block_matvec
from .tridiag import tridiag_eigh
from .validate import check_arguments

__version__ = "0.1.0"


def lanczos(hvp, z, m, *, shift=0.0, reorth="full"):
    """The Lanczos basis and tridiagonal of A + shift I from z ((n,) or (k, n)).

    Returns LanczosResult(basis (k, m, n), alpha (k, m), beta (k, m-1), residual (k, n),
    steps (k,)) with A V^T = V^T T + residual e_m^T; the k axis is dropped for 1-D z.
    Columns that reach an invariant subspace stop early (see `steps`)."""
    hvp, z, restore = adapt(hvp, z)  # NumPy/CuPy in: every field comes back as NumPy/CuPy
    z2 = check_arguments(z, m, None, shift, reorth, 1)
    matvec = as_block_matvec(hvp, z, float(shift))
    if reorth == "full":
        result, _ = lanczos_full(matvec, z2, m, None, None)
    else:
        result, _ = lanczos_three_term(matvec, z2, m, None, None, keep_basis=True)
    result = LanczosResult(*(t[0] for t in result)) if z.dim() == 1 else result
    return LanczosResult(*map(restore, result))


__all__ = [
    "FunmInfo", "LanczosInputError", "LanczosResult", "LaplacePosterior", "NonFiniteError",
    "NotPositiveDefiniteError", "RegressionPredictive", "backend_info", "ef_diagonal", "ef_vp",
    "funm_apply", "ggn_diagonal", "ggn_vp", "hessian_vp", "hutchinson_diagonal",
    "inv_sqrt_apply", "lanczos", "sample_gaussian", "sample_parameters", "tridiag_eigh",
]
