"""The diagonal of an operator the user passed, for precondition="diag", where it is known
without products: dense and sparse matrices. A callable hides its diagonal (estimating it
would cost products: pass it yourself, or use LaplacePosterior, which has the exact GGN's)."""

import numpy as np
import scipy.sparse
import torch

from ..errors import LanczosInputError
from .arrays import is_cupy, to_torch


def operator_diagonal(hvp, like: torch.Tensor) -> torch.Tensor:
    """(n,) diagonal of hvp as a tensor of like's dtype and device."""
    if isinstance(hvp, torch.Tensor):
        if hvp.layout == torch.strided:
            d = torch.diagonal(hvp)
        else:
            coo = hvp.to_sparse_coo().coalesce()
            i, v = coo.indices(), coo.values()
            on = i[0] == i[1]
            d = torch.zeros(hvp.shape[0], dtype=v.dtype, device=v.device)
            d.index_add_(0, i[0, on], v[on])
    elif isinstance(hvp, np.ndarray):
        d = torch.from_numpy(np.ascontiguousarray(np.diagonal(hvp)))
    elif scipy.sparse.issparse(hvp):
        d = torch.from_numpy(np.asarray(hvp.diagonal()))
    elif is_cupy(hvp) and hasattr(hvp, "diagonal"):
        d = to_torch(hvp.diagonal())
    else:
        raise LanczosInputError(
            f"precondition='diag' needs the operator's diagonal, which a "
            f"{type(hvp).__name__} does not show: pass the diagonal as a (n,) tensor "
            "(precondition=d), or use precondition='nystrom'")
    return d.to(dtype=like.dtype, device=like.device)
