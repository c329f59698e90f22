"""Typed wrappers over the compiled kernels in ``fastlanczos._C`` (``torch.ops.fastlanczos``).

Importing this module never fails: without the extension, ``available()`` is False and the
callers fall back to the plain-torch implementations (``reorth.py``, ``torch.linalg.eigh``).
"""

import warnings

import torch

_C = None
_load_error = None
try:
    from .. import _C  # noqa: F811  (registers the ops with the dispatcher)
except ImportError as err:  # not built: pure-Python install
    _load_error = err


def _cuda_mismatch():
    """A message if the extension's CUDA differs from torch's, else None."""
    built = torch.ops.fastlanczos.cuda_version()
    if built < 0 or torch.version.cuda is None:
        return None
    major, minor = built // 1000, (built % 1000) // 10
    t_major, t_minor = (int(x) for x in torch.version.cuda.split(".")[:2])
    if major != t_major:
        return (
            f"fastlanczos._C was compiled with CUDA {major}.{minor} but torch uses CUDA "
            f"{torch.version.cuda}; rebuild fastlanczos against this torch "
            "(pip install --no-build-isolation .). Falling back to plain torch."
        )
    return None


if _C is not None:
    _msg = _cuda_mismatch()
    if _msg is not None:
        warnings.warn(_msg, RuntimeWarning, stacklevel=2)
        _C, _load_error = None, ImportError(_msg)


# Sizes the compiled kernels accept (csrc/checks.h, reorth_step_cuda.cu); larger problems
# take the plain-torch path.
TRIDIAG_MAX_M = 1024
# On the CPU, LAPACK's divide and conquer (torch.linalg.eigh on the dense T, both cores)
# overtakes the O(m^3) QL with eigenvectors for a single matrix from m = 96 on (bench_kernels.py,
# 2 cores: k = 1, m = 64 1.4x, m = 128 0.73x); batches, which the kernel solves two matrices
# per core at a time, stay ahead to m = 128 and beyond (k = 256: m = 64 2.75x, m = 128 1.8x).
CPU_QL_MAX_M = 64
REORTH_MAX_ROWS = 5888

def available() -> bool:
    """True when the compiled extension is loaded."""
    return _C is not None


def load_error():
    """Why the extension is unavailable (an exception), or None."""
    return _load_error


def built_with_cuda() -> bool:
    return available() and torch.ops.fastlanczos.cuda_version() > 0


def supports(device) -> bool:
    """True when every compiled op has a kernel for this device type."""
    if not available():
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(torch.device(device).type)
    if key is None:
        return False
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return all(has(f"fastlanczos::{op}", key) for op in ("tridiag_eigh", "reorth_step",
                                                         "reorth_step_masked",
                                                         "three_term_step"))


def tridiag_eigh(alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of k symmetric tridiagonals (float64 alpha (k, m), beta (k, m-1)).

    Returns ascending eigenvalues (k, m) and eigenvectors (k, m, m), column i for eigenvalue i
    (torch.linalg.eigh's convention). A matrix that is non-finite or does not converge gets NaN
    eigenvalues and eigenvectors; nothing is raised on the device, so the caller checks.
    """
    return torch.ops.fastlanczos.tridiag_eigh(alpha, beta)


def reorth_step(basis: torch.Tensor, w: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused CGS2 step, same contract as ``reorth.cgs2_step_torch``: updates w and basis[:, j+1]
    in place and returns float64 (alpha, beta) of shape (k,)."""
    return torch.ops.fastlanczos.reorth_step(basis, w, j)


def reorth_step_masked(basis: torch.Tensor, w: torch.Tensor, passes: torch.Tensor, j: int,
                       beta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial reorthogonalization's fused step, same contract as
    ``reorth.masked_cgs_step_torch``: passes (k,) uint8 Gram-Schmidt passes per column (0, 1
    or 2); beta (k,) float64, optional: ||w|| on entry, returned for the columns with 0 passes
    instead of reading w again. Returns float64 (v_j components removed, beta) of shape (k,)."""
    return torch.ops.fastlanczos.reorth_step_masked(basis, w, passes, j, beta)


def three_term_step(basis: torch.Tensor, w: torch.Tensor, beta_prev: torch.Tensor,
                    scale: torch.Tensor, j: int):
    """The plain Lanczos update in two passes over w, same contract as
    ``reorth.three_term_step_scaled_torch``: returns float64 (alpha, beta, ||c w||) (k,)."""
    return torch.ops.fastlanczos.three_term_step(basis, w, beta_prev, scale, j)


if _C is not None:

    @torch.library.register_fake("fastlanczos::tridiag_eigh")
    def _tridiag_eigh_fake(alpha, beta):
        k, m = alpha.shape
        return alpha.new_empty((k, m)), alpha.new_empty((k, m, m))

    @torch.library.register_fake("fastlanczos::reorth_step")
    def _reorth_step_fake(basis, w, j):
        k = basis.shape[0]
        return (basis.new_empty((k,), dtype=torch.float64),
                basis.new_empty((k,), dtype=torch.float64))

    @torch.library.register_fake("fastlanczos::reorth_step_masked")
    def _reorth_step_masked_fake(basis, w, passes, j, beta=None):
        k = basis.shape[0]
        return (basis.new_empty((k,), dtype=torch.float64),
                basis.new_empty((k,), dtype=torch.float64))

    @torch.library.register_fake("fastlanczos::three_term_step")
    def _three_term_step_fake(basis, w, beta_prev, scale, j):
        k = basis.shape[0]
        return tuple(basis.new_empty((k,), dtype=torch.float64) for _ in range(3))
