"""fastlanczos: sample N(theta_hat, A^{-1}) by Lanczos, A reached only through products.

    x = fastlanczos.inv_sqrt_apply(hvp, z, m)      # (A + shift I)^{-1/2} z

Layers, imports pointing down: krylov/ (the engine: tensors and block products), operators/
(what users pass -> one checked block product), curvature/ (model products), laplace/
(posteriors); api.py joins the first two into the public calls. This file only re-exports.
"""

from . import distributed as distributed  # fastlanczos.distributed.data_parallel
from .api import funm_apply, inv_root_apply, inv_sqrt_apply, lanczos
from .curvature import (
    ef_diagonal,
    ef_vp,
    ggn_diagonal,
    ggn_vp,
    hessian_vp,
    hutchinson_diagonal,
)
from .errors import (
    LanczosInputError,
    NonFiniteError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    TridiagonalConvergenceError,
)
from .gmrf import sample_gaussian
from .krylov import FunmInfo, LanczosResult, backend_info, tridiag_eigh
from .krylov import ops as ops  # fastlanczos.ops.available() etc., as before the layout
from .laplace import LaplacePosterior, RegressionPredictive, sample_parameters
from .precondition import nystrom_preconditioner

__version__ = "0.1.0"

__all__ = [
    "FunmInfo", "LanczosInputError", "LanczosResult", "LaplacePosterior", "NonFiniteError",
    "NotPositiveDefiniteError", "NotSymmetricError", "RegressionPredictive",
    "TridiagonalConvergenceError", "backend_info", "ef_diagonal", "ef_vp",
    "funm_apply", "ggn_diagonal", "ggn_vp", "hessian_vp", "hutchinson_diagonal",
    "inv_root_apply", "inv_sqrt_apply", "lanczos", "nystrom_preconditioner", "sample_gaussian",
    "sample_parameters", "tridiag_eigh",
]
