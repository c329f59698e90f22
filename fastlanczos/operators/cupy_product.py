"""A CuPy dense matrix, cupyx.scipy.sparse matrix or LinearOperator on CUDA torch vectors,
zero-copy through DLPack. CuPy is imported only when such an operator is passed."""

import torch

from ..errors import LanczosInputError
from .arrays import cupy_device
from .block_product import check_operator, not_square


def cupy_product(A, z, kind):
    """A dense torch view of a CuPy matrix, or V (k, n) -> (A V^T)^T in one call."""
    import cupy
    import cupyx.scipy.sparse

    if kind == "numpy" or z.device.type != "cuda":
        raise LanczosInputError(f"a CuPy operator ({type(A).__name__}) needs z on its GPU, "
                                f"got a {kind} z on {z.device}; use cupy.asarray(z)")
    device = cupy_device(A)
    if isinstance(A, cupy.ndarray):
        if A.ndim != 2:
            not_square(A.shape)
        return torch.from_dlpack(A)  # dense: the engine's own dense path, zero-copy
    if not hasattr(A, "shape") or not (cupyx.scipy.sparse.issparse(A) or hasattr(A, "matmat")):
        raise LanczosInputError(f"unsupported CuPy operator {type(A).__name__}")
    check_operator(A, z, "CuPy operator", getattr(A, "dtype", None), device)
    sparse = cupyx.scipy.sparse.issparse(A)

    def product(V):
        Vc = cupy.from_dlpack(V.detach())
        if Vc.ndim == 1:
            out = A @ Vc if sparse else A.matvec(Vc)
        else:
            out = (A @ Vc.T if sparse else A.matmat(Vc.T)).T
        return torch.from_dlpack(cupy.asarray(out))

    return product
