"""The caller's array types: which kind z is, a torch view of it, and the way back.

NumPy -> torch.from_numpy (CPU); CuPy -> torch.from_dlpack (same GPU); restore(x) turns a
result back into the caller's type (x.numpy() / cupy.from_dlpack(x)), the identity for torch.
CuPy is imported only when an argument's type comes from a `cupy` module.
"""

import warnings

import numpy as np
import torch


def is_cupy(obj):
    return type(obj).__module__.split(".")[0] in ("cupy", "cupyx")


def array_kind(x):
    if isinstance(x, torch.Tensor):
        return "torch"
    if isinstance(x, np.ndarray):
        return "numpy"
    if is_cupy(x) and hasattr(x, "__dlpack__") and hasattr(x, "device"):
        return "cupy"
    return None


def kind_name(kind):
    return {"numpy": "NumPy", "cupy": "CuPy", "torch": "torch"}[kind]


def cupy_device(A):
    """The torch device of a CuPy array or cupyx sparse matrix (None for a LinearOperator:
    sparse matrices keep it on their .data, and an operator's products reveal it)."""
    data = A if hasattr(A, "__dlpack__") else getattr(A, "data", None)
    return torch.device("cuda", data.device.id) if hasattr(data, "__dlpack__") else None


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


def identity(x):
    return x


def _to_numpy(x):
    return x.detach().numpy()


def _to_cupy(x):
    import cupy

    return cupy.from_dlpack(x.detach())


RESTORE = {"torch": identity, "numpy": _to_numpy, "cupy": _to_cupy}
