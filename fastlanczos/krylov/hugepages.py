"""Ask Linux for transparent huge pages under a large, still untouched CPU buffer (the basis).

A fresh (k, m, n) basis is memory the kernel maps on first touch, one 4 KiB page at a time:
each step writes a new row, and at k = 8, n = 1.33M float32 the page faults of that row cost
about as much as the arithmetic of a step without reorthogonalization (46 against 17 ms per
step in the fused kernel; benchmarks/bench_reorth.py). madvise(MADV_HUGEPAGE) on the buffer
makes those faults 2 MiB each. Where THP is off, or not Linux, or the call fails, nothing
changes (the advice is only advice). PyTorch's THP_MEM_ALLOC_ENABLE=1 does this for every
large CPU allocation, products included, but must be set before torch starts.
"""

import ctypes
import ctypes.util
import sys

import torch

MADV_HUGEPAGE = 14
HUGE = 2 * 2**20
MIN_BYTES = 8 * HUGE  # below this the faults do not matter

_madvise = None


def _libc_madvise():
    global _madvise
    if _madvise is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            fn = libc.madvise
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            fn.restype = ctypes.c_int
            _madvise = fn
        except (OSError, AttributeError):
            _madvise = False
    return _madvise


def advise_huge_pages(t: torch.Tensor) -> bool:
    """madvise the whole 2 MiB pages inside t's storage; True if the call was made and
    succeeded. Only for CPU tensors on Linux of at least MIN_BYTES."""
    if t.device.type != "cpu" or not sys.platform.startswith("linux"):
        return False
    nbytes = t.untyped_storage().nbytes()
    if nbytes < MIN_BYTES:
        return False
    fn = _libc_madvise()
    if not fn:
        return False
    start = t.untyped_storage().data_ptr()
    first = (start + HUGE - 1) // HUGE * HUGE
    length = (start + nbytes - first) // HUGE * HUGE
    return length > 0 and fn(first, length, MADV_HUGEPAGE) == 0


def empty_basis(k: int, m: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """torch.empty(k, m, n) of like's dtype and device, with huge pages advised on the CPU."""
    basis = torch.empty(k, m, n, dtype=like.dtype, device=like.device)
    advise_huge_pages(basis)
    return basis
