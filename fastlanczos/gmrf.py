"""Samples of a Gaussian Markov random field N(mean, Q^{-1}) from its sparse precision Q.

x = mean + Q^{-1/2} z with z ~ N(0, I): Cov(x) = Q^{-1/2} Q^{-1/2} = Q^{-1}. Unlike sampling
through a Cholesky factor (x = mean + L^{-T} z), nothing is factorized: Q is touched only
through products, so fill-in never happens, and the cost is about (number of Lanczos steps)
sparse products. The steps grow like sqrt(condition number of Q) * log(1/tol).
"""

import warnings

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from .api import inv_root_apply
from .errors import LanczosInputError
from .operators import RESTORE, adapt, array_kind, cupy_device, to_torch, torch_dtype
from .operators.diagonal import operator_diagonal


def sample_gaussian(precision, num_samples, *, mean=None, m=None, tol=1e-6, dtype=None,
                    generator=None, seed=None, reorth="full", check_every=4,
                    precondition=None, progress=False, memory_budget=None, return_info=False,
                    eig_lower_bound=None):
    """Draw num_samples rows from N(mean, precision^{-1}); returns (num_samples, n).

    precision: any operator `funm_apply` takes: a scipy.sparse matrix or LinearOperator,
    a torch sparse (COO/CSR) or dense tensor, a CuPy array or cupyx.scipy.sparse matrix,
    or a callable (then `mean` is required: it gives n and the array type).
    The result is NumPy for SciPy/NumPy operators, CuPy for CuPy ones and torch for torch
    ones (a callable: the type of `mean`); `mean`, if given, must be of that same family.
    dtype: float64 or float32 (torch, NumPy or string); default: the precision's (or the
    mean's) floating dtype, else float64.
    m: the most Lanczos steps (default min(n, 300)); tol: the relative error target of each
    sample (the estimate is in info.error_estimate). A sample that misses tol by step m
    gives a RuntimeWarning. Memory with reorth="full" is about m * num_samples * n values;
    reorth="none" keeps O(num_samples * n) for twice the products.
    generator (a torch.Generator on the samples' device) or seed (an int) make the draw
    reproducible; with neither, torch's global generator is used.
    precondition: as for fastlanczos.inv_root_apply (None, "auto", "nystrom", "diag", a
    positive (n,) tensor, or a preconditioner object); the draws have the same distribution.
    None is the default: a GMRF's spectrum decays slowly, which a low-rank sketch cannot
    exploit, and "auto" falls back to none there (benchmarks/bench_precondition.py).
    progress: a tqdm bar over the steps. memory_budget: bytes for the run's own allocations
    (chunks of samples, or the two-pass mode; see fastlanczos.inv_root_apply).
    return_info: also return the FunmInfo (torch tensors).
    eig_lower_bound: b > 0 with precision >= b I where known (e.g. the nugget of Q = L + tau I,
    L a graph Laplacian: tau): the stop is then the Gauss-Radau one (fastlanczos.funm_apply).
    On grid GMRFs it gains little (-20% to +7% steps measured, 12x12 to 100x100, tol 1e-3
    and 1e-6): tau is an isolated eigenvalue there, which the estimate overweights once found.
    """
    kind = _family(precision, mean)
    n = _size(precision, mean)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise LanczosInputError(f"num_samples must be a positive int, got {num_samples!r}")
    tdtype = _resolve_dtype(dtype, precision, mean)
    device = _device(precision, mean)
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(int(seed))

    z = torch.randn(num_samples, n, generator=generator, dtype=tdtype, device=device)
    hvp, z, _ = adapt(precision, RESTORE[kind](z))  # checks the operator against z
    pre = _native(precondition, z, precision)
    x, info = inv_root_apply(hvp, z, min(n, 300) if m is None else m, tol=tol, reorth=reorth,
                             check_every=check_every, precondition=pre, progress=progress,
                             memory_budget=memory_budget, return_info=True,
                             eig_lower_bound=eig_lower_bound)
    if tol is not None and not bool(info.converged.all()):
        warnings.warn(f"sample_gaussian: {int((~info.converged).sum())} of {num_samples} "
                      f"samples did not reach tol={tol:g} within {int(info.steps.max())} "
                      f"steps (largest error estimate {float(info.error_estimate.max()):.2e}); "
                      "raise m", RuntimeWarning, stacklevel=2)
    if mean is not None:
        x += _mean_as_torch(mean, n, x)
    x = RESTORE[kind](x)
    return (x, info) if return_info else x


def _native(precondition, z, precision):
    """"diag" read from the precision as the user gave it (adapt turned SciPy into a
    callable, whose diagonal is hidden)."""
    if isinstance(precondition, str) and precondition == "diag":
        return operator_diagonal(precision, z)
    return precondition


def _family(precision, mean):
    """The array type of the result: the operator's, or for a callable the mean's."""
    if isinstance(precision, torch.Tensor):
        kind = "torch"
    elif _module(precision) in ("cupy", "cupyx"):
        kind = "cupy"
    elif _on_cpu_numpy(precision):
        kind = "numpy"
    elif callable(precision):
        if mean is None:
            raise LanczosInputError("a callable precision needs mean= (it gives the size n "
                                    "and the array type of the samples)")
        kind = array_kind(mean)
        if kind is None:
            raise LanczosInputError(f"mean must be a torch, NumPy or CuPy array, got "
                                    f"{type(mean).__name__}")
        return kind
    else:
        raise LanczosInputError(f"unsupported precision operator {type(precision).__name__}")
    if mean is not None and array_kind(mean) != kind:
        raise LanczosInputError(f"mean is a {array_kind(mean) or type(mean).__name__} array "
                                f"but the precision is a {kind} operator; use one family")
    return kind


def _module(obj):
    return type(obj).__module__.split(".")[0]


def _on_cpu_numpy(obj):
    return (isinstance(obj, (np.ndarray, scipy.sparse.linalg.LinearOperator))
            or scipy.sparse.issparse(obj))


def _size(precision, mean):
    shape = getattr(precision, "shape", None)
    if shape is None:
        shape = (mean.shape[-1],) * 2
    if len(shape) != 2 or shape[0] != shape[1]:
        raise LanczosInputError(f"the precision must be square (n, n), got {tuple(shape)}")
    return int(shape[0])


def _resolve_dtype(dtype, precision, mean):
    if dtype is None:
        found = [torch_dtype(getattr(source, "dtype", None)) for source in (precision, mean)]
        return next((d for d in found if d is not None), torch.float64)
    if torch_dtype(dtype) is None:
        raise LanczosInputError(f"dtype must be float32 or float64, got {dtype!r}")
    return torch_dtype(dtype)


def _device(precision, mean):
    if isinstance(precision, torch.Tensor):
        return precision.device
    if _module(precision) in ("cupy", "cupyx"):
        return cupy_device(precision) or torch.device("cuda", torch.cuda.current_device())
    if _on_cpu_numpy(precision):
        return torch.device("cpu")
    return to_torch(mean).device


def _mean_as_torch(mean, n, x):
    mu = to_torch(mean)
    if tuple(mu.shape) != (n,):
        raise LanczosInputError(f"mean must have shape ({n},), got {tuple(mu.shape)}")
    if mu.device != x.device:
        raise LanczosInputError(f"mean is on {mu.device} but the samples are on {x.device}")
    return mu.to(x.dtype)


def grid_precision(shape, tau, dtype=np.float64):
    """Q = L + tau I on a regular grid of the given shape (C order), L the graph Laplacian
    with unit weights, as scipy CSR: the standard test GMRF (a discretized Matern-type
    field). Its eigenvalues lie in [tau, tau + 4 len(shape)), so Q is SPD for tau > 0."""
    n = int(np.prod(shape))
    Q = tau * scipy.sparse.identity(n, dtype=dtype, format="csr")
    for axis, s in enumerate(shape):
        degree = np.full(s, 2.0)
        degree[[0, -1]] = 1.0 if s > 1 else 0.0
        path = scipy.sparse.diags([-np.ones(s - 1), degree, -np.ones(s - 1)], [-1, 0, 1])
        before = scipy.sparse.identity(int(np.prod(shape[:axis])))
        after = scipy.sparse.identity(int(np.prod(shape[axis + 1:])))
        Q = Q + scipy.sparse.kron(scipy.sparse.kron(before, path), after)  # Kronecker sum
    return Q.astype(dtype).tocsr()
