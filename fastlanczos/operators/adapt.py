"""Meet NumPy/SciPy and CuPy users where they are: their operators and vectors in, theirs out.

`adapt(hvp, z)` returns (hvp for torch, z as a torch tensor, restore). The engine only ever
sees torch; the caller's arrays are viewed, never copied:

- z: NumPy -> torch.from_numpy (CPU); CuPy -> torch.from_dlpack (same GPU). restore(x) turns
  a result back into the caller's type (x.numpy() / cupy.from_dlpack(x)); for a torch z it
  is the identity.
- hvp: a dense torch tensor or callable (unchanged); a torch sparse tensor (COO or CSR);
  a dense NumPy or CuPy matrix (viewed as a torch tensor once); a scipy.sparse matrix or
  array, a scipy LinearOperator; a cupyx.scipy.sparse matrix or LinearOperator.
  A block of vectors (k, n) goes through one call of the operator on its transpose (n, k).
- A plain callable receives and returns the caller's array type (NumPy for a NumPy z,
  CuPy for a CuPy z, torch for torch).

Copies that remain, stated so nobody is surprised: SciPy/cupyx may copy the (n, k) block
into the memory order their kernel wants; a COO torch tensor that is not coalesced is
coalesced once. A SciPy operator only runs on the CPU, so a CUDA z is refused rather than
shipped to the host at every step; with a CPU torch z the vectors are shared with NumPy.

CuPy is imported only when an argument's type comes from a `cupy` module.
"""

import warnings

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from .errors import LanczosInputError
from .operator import check_square


def adapt(hvp, z):
    """(hvp_for_torch, z_torch, restore) for any supported operator and z."""
    kind = array_kind(z)
    if kind is None:  # not an array we know: the engine's own checks explain what is wrong
        return hvp, z, _identity
    z_t, restore = to_torch(z), RESTORE[kind]
    return _operator(hvp, z_t, kind), z_t, restore


def cupy_device(A):
    """The torch device of a CuPy array or cupyx sparse matrix (None for a LinearOperator:
    sparse matrices keep it on their .data, and an operator's products reveal it)."""
    data = A if hasattr(A, "__dlpack__") else getattr(A, "data", None)
    return torch.device("cuda", data.device.id) if hasattr(data, "__dlpack__") else None


def _is_cupy(obj):
    return type(obj).__module__.split(".")[0] in ("cupy", "cupyx")


def array_kind(x):
    if isinstance(x, torch.Tensor):
        return "torch"
    if isinstance(x, np.ndarray):
        return "numpy"
    if _is_cupy(x) and hasattr(x, "__dlpack__") and hasattr(x, "device"):
        return "cupy"
    return None


def to_torch(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if any(s < 0 for s in x.strides):  # torch cannot view negative strides
            x = x.copy()
        with warnings.catch_warnings():  # read-only arrays: the engine never writes into z
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(x)
    return torch.from_dlpack(x)


def _identity(x):
    return x


def _to_numpy(x):
    return x.detach().numpy()


def _to_cupy(x):
    import cupy

    return cupy.from_dlpack(x.detach())


RESTORE = {"torch": _identity, "numpy": _to_numpy, "cupy": _to_cupy}


def _operator(hvp, z, kind):
    """Turn hvp into what the engine takes: a dense torch tensor or a torch callable."""
    if isinstance(hvp, torch.Tensor):
        if hvp.layout == torch.strided:
            return hvp  # dense: checked by the engine
        _check_square(hvp, z, "torch sparse tensor", hvp.dtype, hvp.device)
        return _torch_sparse_product(hvp)
    if isinstance(hvp, np.ndarray):
        if kind == "cupy":
            raise LanczosInputError("a NumPy matrix with a CuPy z: put both on the same side "
                                    "(cupy.asarray(A) or cupy.asnumpy(z))")
        return torch.from_numpy(hvp) if hvp.ndim == 2 else _not_square(hvp.shape)
    if scipy.sparse.issparse(hvp) or isinstance(hvp, scipy.sparse.linalg.LinearOperator):
        return _scipy_product(hvp, z, kind)
    if _is_cupy(hvp):
        return _cupy_product(hvp, z, kind)
    if callable(hvp):
        return hvp if kind == "torch" else _foreign_callable(hvp, kind)
    raise LanczosInputError(
        f"hvp must be a callable, a dense or sparse torch tensor, a NumPy/CuPy matrix, a "
        f"scipy.sparse or cupyx.scipy.sparse matrix or a LinearOperator; got "
        f"{type(hvp).__module__}.{type(hvp).__name__}")


def _not_square(shape):
    raise LanczosInputError(f"the operator must be a square (n, n) matrix, got shape "
                            f"{tuple(shape)}")


def _check_square(A, z, what, dtype, device=None):
    if dtype is not None and torch_dtype(dtype) is None:  # e.g. an integer matrix
        raise LanczosInputError(f"dtype mismatch: the {what} is {dtype}, z is {z.dtype}")
    check_square(A.shape, torch_dtype(dtype), device, z, what)


def torch_dtype(dtype):
    """torch.float32 / torch.float64 for such a torch, NumPy (CuPy) or string dtype, else None."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        return dtype if dtype in (torch.float32, torch.float64) else None
    try:
        name = np.dtype(dtype).name
    except TypeError:
        return None
    return {"float32": torch.float32, "float64": torch.float64}.get(name)


def _torch_sparse_product(Q):
    if Q.layout == torch.sparse_coo and not Q.is_coalesced():
        Q = Q.coalesce()  # once, not at every step

    def product(V):
        if V.dim() == 1:
            return torch.mv(Q, V) if Q.layout == torch.sparse_coo else Q @ V
        return torch.sparse.mm(Q, V.T).T  # (n, k) block in one sparse product

    return product


def _scipy_product(A, z, kind):
    what = "SciPy LinearOperator" if not scipy.sparse.issparse(A) else "scipy.sparse matrix"
    if kind == "cupy" or z.device.type != "cpu":
        raise LanczosInputError(f"a {what} runs on the CPU but z is on {z.device} ("
                                f"{kind}); use a cupyx.scipy.sparse matrix or a torch sparse "
                                "tensor for GPU vectors, or move z to the CPU")
    _check_square(A, z, what, getattr(A, "dtype", None))
    matmat = A.matmat if not scipy.sparse.issparse(A) else A.__matmul__
    matvec = A.matvec if not scipy.sparse.issparse(A) else A.__matmul__

    def product(V):
        Vn = V.detach().numpy()  # a view: z and the basis live on the CPU
        out = matvec(Vn) if Vn.ndim == 1 else matmat(Vn.T).T
        return to_torch(np.asarray(out))

    return product


def _cupy_product(A, z, kind):
    import cupy
    import cupyx.scipy.sparse

    if kind == "numpy" or z.device.type != "cuda":
        raise LanczosInputError(f"a CuPy operator ({type(A).__name__}) needs z on its GPU, "
                                f"got a {kind} z on {z.device}; use cupy.asarray(z)")
    device = cupy_device(A)
    if isinstance(A, cupy.ndarray):
        if A.ndim != 2:
            _not_square(A.shape)
        return torch.from_dlpack(A)  # dense: the engine's own dense path, zero-copy
    if not hasattr(A, "shape") or not (cupyx.scipy.sparse.issparse(A) or hasattr(A, "matmat")):
        raise LanczosInputError(f"unsupported CuPy operator {type(A).__name__}")
    _check_square(A, z, "CuPy operator", getattr(A, "dtype", None), device)
    sparse = cupyx.scipy.sparse.issparse(A)

    def product(V):
        Vc = cupy.from_dlpack(V.detach())
        if Vc.ndim == 1:
            out = A @ Vc if sparse else A.matvec(Vc)
        else:
            out = (A @ Vc.T if sparse else A.matmat(Vc.T)).T
        return torch.from_dlpack(cupy.asarray(out))

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
