"""Meet NumPy/SciPy and CuPy users where they are: their operators and vectors in, theirs out.

`adapt(hvp, z)` returns (hvp for torch, z as a torch tensor, restore). The engine only ever
sees torch; the caller's arrays are viewed, never copied:

- z: NumPy, CuPy or torch (arrays.py); restore(x) gives a result back in z's own type.
- hvp: a dense torch tensor or callable (unchanged); a torch sparse tensor (COO or CSR);
  a dense NumPy or CuPy matrix (viewed as a torch tensor once); a scipy.sparse matrix or
  array, a scipy LinearOperator (scipy_product.py); a cupyx.scipy.sparse matrix or
  LinearOperator (cupy_product.py). A block of vectors (k, n) goes through one call of the
  operator on its transpose (n, k).
- A plain callable receives and returns the caller's array type (NumPy for a NumPy z,
  CuPy for a CuPy z, torch for torch).

Copies that remain, stated so nobody is surprised: SciPy/cupyx may copy the (n, k) block
into the memory order their kernel wants; a COO torch tensor that is not coalesced is
coalesced once. A SciPy operator only runs on the CPU, so a CUDA z is refused rather than
shipped to the host at every step; with a CPU torch z the vectors are shared with NumPy.
"""

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from ..errors import LanczosInputError
from .arrays import RESTORE, array_kind, identity, is_cupy, kind_name, to_torch
from .block_product import check_operator, not_square, torch_dtype
from .cupy_product import cupy_product
from .scipy_product import scipy_product


def adapt(hvp, z):
    """(hvp_for_torch, z_torch, restore) for any supported operator and z."""
    kind = array_kind(z)
    if kind is None:  # not an array we know: the engine's own checks explain what is wrong
        return hvp, z, identity
    if kind != "torch" and torch_dtype(z.dtype) is None:  # name the caller's own dtype
        raise LanczosInputError(f"z must be float32 or float64, got a {kind_name(kind)} array "
                                f"of dtype {z.dtype}")
    z_t, restore = to_torch(z), RESTORE[kind]
    return _operator(hvp, z_t, kind), z_t, restore


def _operator(hvp, z, kind):
    """Turn hvp into what the engine takes: a dense torch tensor or a torch callable."""
    if isinstance(hvp, torch.Tensor):
        if hvp.layout == torch.strided:
            return hvp  # dense: checked by the engine
        check_operator(hvp, z, "torch sparse tensor", hvp.dtype, hvp.device)
        return _torch_sparse_product(hvp)
    if isinstance(hvp, np.ndarray):
        if kind == "cupy":
            raise LanczosInputError("a NumPy matrix with a CuPy z: put both on the same side "
                                    "(cupy.asarray(A) or cupy.asnumpy(z))")
        return torch.from_numpy(hvp) if hvp.ndim == 2 else not_square(hvp.shape)
    if scipy.sparse.issparse(hvp) or isinstance(hvp, scipy.sparse.linalg.LinearOperator):
        return scipy_product(hvp, z, kind)
    if is_cupy(hvp):
        return cupy_product(hvp, z, kind)
    if callable(hvp):
        return hvp if kind == "torch" else _foreign_callable(hvp, kind)
    raise LanczosInputError(
        f"hvp must be a callable, a dense or sparse torch tensor, a NumPy/CuPy matrix, a "
        f"scipy.sparse or cupyx.scipy.sparse matrix or a LinearOperator; got "
        f"{type(hvp).__module__}.{type(hvp).__name__}")


def _torch_sparse_product(Q):
    if Q.layout == torch.sparse_coo and not Q.is_coalesced():
        Q = Q.coalesce()  # once, not at every step

    def product(V):
        if V.dim() == 1:
            return torch.mv(Q, V) if Q.layout == torch.sparse_coo else Q @ V
        return torch.sparse.mm(Q, V.T).T  # (n, k) block in one sparse product

    return product


def _foreign_callable(f, kind):
    """A user callable written for NumPy or CuPy arrays: hand it views of the vectors."""
    restore = RESTORE[kind]

    def product(V):
        out = f(restore(V))
        if array_kind(out) is None:
            raise LanczosInputError(f"hvp must return an array of z's kind ({kind}), got "
                                    f"{type(out).__name__}")
        return to_torch(out)

    return product
