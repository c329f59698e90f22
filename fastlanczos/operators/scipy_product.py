"""A scipy.sparse matrix or SciPy LinearOperator as a block product on CPU torch vectors."""

import numpy as np
import scipy.sparse

from ..errors import LanczosInputError
from .arrays import to_torch
from .block_product import check_operator


def scipy_product(A, z, kind):
    """V (k, n) -> (A V^T)^T through one matmat on the (n, k) block; V is shared with NumPy."""
    what = "SciPy LinearOperator" if not scipy.sparse.issparse(A) else "scipy.sparse matrix"
    if kind == "cupy" or z.device.type != "cpu":
        raise LanczosInputError(f"a {what} runs on the CPU but z is on {z.device} ("
                                f"{kind}); use a cupyx.scipy.sparse matrix or a torch sparse "
                                "tensor for GPU vectors, or move z to the CPU")
    check_operator(A, z, what, getattr(A, "dtype", None))
    matmat = A.matmat if not scipy.sparse.issparse(A) else A.__matmul__
    matvec = A.matvec if not scipy.sparse.issparse(A) else A.__matmul__

    def product(V):
        Vn = V.detach().numpy()  # a view: z and the basis live on the CPU
        out = matvec(Vn) if Vn.ndim == 1 else matmat(Vn.T).T
        return to_torch(np.asarray(out))

    return product
