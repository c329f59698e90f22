"""Whatever a user passes as the operator -> one checked block product V (k, n) -> A V.

block_product.py is the generic check (callable or dense torch matrix: shapes, dtypes,
devices, the shift); adapt.py dispatches the other kinds (torch sparse, NumPy, SciPy in
scipy_product.py, CuPy in cupy_product.py) and views the caller's z (arrays.py). The
adapters import the generic check, never the other way round.
"""

from .adapt import adapt
from .arrays import RESTORE, array_kind, cupy_device, to_torch
from .block_product import as_block_matvec, torch_dtype

__all__ = ["RESTORE", "adapt", "array_kind", "as_block_matvec", "cupy_device", "to_torch",
           "torch_dtype"]
