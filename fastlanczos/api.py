"""The public entry points: the user's operator and z in, results of z's own type out.

Each call adapts the operator (fastlanczos.operators: callable, dense, SciPy, torch sparse,
CuPy, NumPy) into one checked block product and runs the Krylov engine (fastlanczos.krylov)
on z as a (k, n) block.

shard_group= (a torch.distributed process group, e.g. torch.distributed.group.WORLD): z holds
this rank's slice of each vector (parameters split over ranks, FSDP-style), hvp maps local
slices to local slices (communicating inside as it needs), and every inner product and norm
of the recurrence is all-reduced over the group (krylov/sharded.py); the result is this
rank's slice. Every rank of the group must make the same call.
"""

import torch

from .errors import LanczosInputError
from .krylov import funm_block
from .krylov.budget import plan
from .krylov.lanczos import LanczosResult, lanczos_full, lanczos_partial, lanczos_three_term
from .krylov.precondition import preconditioned
from .krylov.progress import make_progress
from .krylov.radau import STIELTJES_FUNCTIONS
from .krylov.sharded import shard_reducer
from .krylov.validate import check_arguments, check_bound
from .operators import adapt, as_block_matvec
from .operators.diagonal import operator_diagonal
from .precondition import active, choose_preconditioner


def funm_apply(hvp, z, f, m, *, tol=None, shift=0.0, reorth="full", return_info=False,
               check_every=4, check=True, check_symmetry=False, progress=False,
               shard_group=None, eig_lower_bound=None):
    """f(A + shift I) z for z of shape (n,) or (k, n), A given by hvp (callable or dense matrix).

    f: "inv_sqrt", "sqrt", "inv", "exp", "log", or a callable on a float64 tensor of
    eigenvalues. m: the most Lanczos steps. tol: stop once every column's estimated relative
    error is below tol (checked every few steps, one host sync per check). reorth: "full"
    (CGS2 against the stored basis every step), "partial" (the stored basis, Gram-Schmidt only
    at the steps where Simon's omega recurrence estimates orthogonality lost past sqrt(eps))
    or "none" (three vectors in memory; the basis is
    regenerated in a second pass, so twice the products). check=False skips the final
    validation, so a fixed-m run on a GPU never synchronizes with the host.
    Failures (a non-positive Ritz value, non-finite numbers, an unsolvable tridiagonal)
    spend one more product to test whether the operator is symmetric, and raise
    NotSymmetricError when it is not; check_symmetry=True runs that probe before the run.
    progress=True shows a tqdm bar (steps, products, error estimate).
    shard_group: z and hvp work on this rank's slices (see the module docstring).
    eig_lower_bound: a number b with A + shift I >= b I (positive for inv_sqrt, inv and log),
    e.g. the prior precision when hvp is a curvature (PSD) and shift that prior. The error
    estimate (info.error_estimate, and the stop with tol) is then the Gauss-Radau one
    (krylov/radau.py): the error of the current iterate from T alone, near the actual error
    even on plateaus, so runs stop within a step or two of the fewest steps that meet tol
    (README, "Stopping at a tolerance"). A Ritz value below b raises LanczosInputError.
    Without it, a closure from ggn_vp (of a convex loss) or ef_vp with shift > 0 gets shift
    as its bound (derived_bound).
    """
    _check_sharded_operator(hvp, shard_group)
    hvp_user = hvp
    hvp, z, restore = adapt(hvp, z)  # NumPy/SciPy/CuPy in, the same out (info stays torch)
    z2 = check_arguments(z, m, tol, shift, reorth, check_every, shard_group is not None)
    reducer = _reducer(shard_group, z2, m, tol, reorth, check_every)
    bound, strict = derived_bound(hvp_user, f, shift, eig_lower_bound)
    matvec = as_block_matvec(hvp, z, float(shift))
    x, info = _run(matvec, z, z2, f, m, tol, reorth, check_every, check, check_symmetry,
                   progress, reducer=reducer, bound=bound, strict_bound=strict)
    return (restore(x), info) if return_info else restore(x)


def derived_bound(hvp, f, shift, eig_lower_bound):
    """(bound, strict) for the stopping estimate: the user's eig_lower_bound, checked (strict:
    a Ritz value below it is an error); else shift, where hvp is a curvature the library
    built PSD (ggn_vp of a convex loss and ef_vp set hvp.psd) and shift > 0, since then
    A + shift I >= shift I. That one is derived, so not strict: the products' rounding can
    put eigenvalues a little below it, and a column whose Ritz values go below it goes back
    to the stopping rule."""
    if eig_lower_bound is not None:
        return check_bound(eig_lower_bound, f), True
    if getattr(hvp, "psd", False) is True and isinstance(f, str) and f in STIELTJES_FUNCTIONS \
            and float(shift) > 0:
        return float(shift), False
    return None, True


def _check_sharded_operator(hvp, shard_group):
    if shard_group is not None and (isinstance(hvp, torch.Tensor) or not callable(hvp)):
        raise LanczosInputError("shard_group= needs hvp to be a callable mapping this rank's "
                                "slices (k, n_local) to slices; a matrix holds no sharding, got "
                                f"a {type(hvp).__name__}")


def _reducer(shard_group, z2, m, tol, reorth, check_every):
    if shard_group is None:
        return None
    return shard_reducer(shard_group, z2, m, tol, reorth, check_every)


def _run(matvec, z, z2, f, m, tol, reorth, check_every, check, check_symmetry, progress,
         pre=None, reducer=None, bound=None, strict_bound=True):
    bar = make_progress(progress, m * (2 if reorth == "none" else 1))
    try:
        x, info = funm_block(matvec, z2, f, m, tol=tol, reorth=reorth, check_every=check_every,
                             check=check, check_symmetry=check_symmetry, single=z.dim() == 1,
                             progress=bar, reducer=reducer, bound=bound,
                             strict_bound=strict_bound)
    finally:
        if bar is not None:
            bar.close()
    if pre is not None:
        info = info._replace(preconditioner_rank=pre.rank, preconditioner_products=pre.products)
    if z.dim() == 1:
        x = x[0]
        info = info._replace(**{f: getattr(info, f)[0] for f in info._fields[:5]})
    return x, info


def inv_sqrt_apply(hvp, z, m, *, tol=None, shift=0.0, reorth="full", return_info=False,
                   check_every=4, check=True, check_symmetry=False, progress=False,
                   shard_group=None, eig_lower_bound=None):
    """(A + shift I)^{-1/2} z: with z ~ N(0, I), a sample of N(0, (A + shift I)^{-1}).
    eig_lower_bound: see funm_apply (for a curvature with its prior as shift: the prior)."""
    return funm_apply(hvp, z, "inv_sqrt", m, tol=tol, shift=shift, reorth=reorth,
                      return_info=return_info, check_every=check_every, check=check,
                      check_symmetry=check_symmetry, progress=progress,
                      shard_group=shard_group, eig_lower_bound=eig_lower_bound)


def inv_root_apply(hvp, z, m, *, precondition=None, tol=None, shift=0.0, reorth="full",
                   return_info=False, check_every=4, check=True, check_symmetry=False,
                   progress=False, memory_budget=None, shard_group=None,
                   eig_lower_bound=None):
    """x = R z with R R^T = (A + shift I)^{-1}: with z ~ N(0, I), a sample of
    N(0, (A + shift I)^{-1}). Without a preconditioner R = (A + shift I)^{-1/2}
    (inv_sqrt_apply); with one, P = G^{-2}, R = G (G (A + shift I) G)^{-1/2}: the same
    distribution, another draw, and Lanczos runs on the better-conditioned G A G.

    precondition: None (default), "nystrom" (a randomized Nystrom sketch of hvp, rank="auto";
    fastlanczos.nystrom_preconditioner), "auto" (that sketch, kept only where its model of the
    spectrum predicts fewer products than none; a flat spectrum such as a GMRF's gives none),
    "diag" (the operator's diagonal plus shift, for dense and sparse matrices), a positive (n,)
    tensor d (P = diag(d)), or an object from nystrom_preconditioner (anything with
    root(V) -> G V on (k, n) rows, G symmetric positive definite). A sketch assumes hvp is
    positive semi-definite (a curvature) with shift the prior floor.
    tol applies to the preconditioned iterate y (x = G y): x's relative error is tol times
    at most ||G|| ||y|| / ||G y||, which is ~1 when the rank is small against n.
    memory_budget: bytes for the run's own allocations (the basis, the work vectors, a
    preconditioner's U; not the operator's memory): the rows of z run in chunks whose basis
    fits, or two-pass (reorth="none", O(n) per sample, twice the products) when not even one
    sample's basis fits (krylov/budget.py); info.memory_plan says what was chosen.
    eig_lower_bound: b with A + shift I >= b I, as for funm_apply. With a preconditioner the
    bound of G (A + shift I) G is the preconditioner's lower_bound(b) (krylov/precondition.py:
    a Nystrom sketch of a PSD hvp, made for this shift, gives ~1; the others, and objects
    without lower_bound, give none, and the stopping rule decides). Without it, ggn_vp's and
    ef_vp's closures with shift > 0 take shift (funm_apply).
    Other arguments, errors and info as funm_apply; info.preconditioner_rank and
    info.preconditioner_products report the sketch's rank and the vector products it cost
    (rank 0 and the probe's products where "auto" declined).
    shard_group (see the module docstring): precondition may then be None, this rank's slice
    of a diagonal d, or an object whose root() works on slices; the sketch and "diag" are
    not sharded, nor is memory_budget (its chunks would follow each rank's own n).
    """
    _check_sharded_operator(hvp, shard_group)
    if shard_group is not None and memory_budget is not None:
        raise LanczosInputError("memory_budget= is not available with shard_group=")
    if shard_group is not None and isinstance(precondition, str):
        raise LanczosInputError(f"precondition={precondition!r} is not available with "
                                "shard_group= (the Nystrom sketch and the operator's diagonal "
                                "are not sharded): pass None, this rank's slice of a positive "
                                "diagonal, or an object whose root() acts on slices")
    hvp_user = hvp
    hvp, z, restore = adapt(hvp, z)
    z2 = check_arguments(z, m, tol, shift, reorth, check_every, shard_group is not None)
    reducer = _reducer(shard_group, z2, m, tol, reorth, check_every)
    shift = float(shift)
    k, n = z2.shape
    itemsize = z2.element_size()
    plan(k, n, m, itemsize, memory_budget, reorth)  # a bad budget fails before any product
    matvec = as_block_matvec(hvp, z, shift)
    rank_cap = None if memory_budget is None else int(memory_budget // (4 * n * itemsize))
    pre = choose_preconditioner(precondition, _sketch_product(hvp, z), z2, shift, tol,
                                diagonal=lambda: operator_diagonal(hvp_user, z2),
                                max_rank=rank_cap)
    applied = active(pre)
    held = applied.u.numel() * itemsize if hasattr(applied, "u") else 0
    chosen = plan(k, n, m, itemsize, memory_budget, reorth, fixed=held)
    op = matvec if applied is None else preconditioned(matvec, applied)
    bound, strict = derived_bound(hvp_user, "inv_sqrt", shift, eig_lower_bound)
    if bound is not None and applied is not None:
        bound = applied.lower_bound(bound) if callable(getattr(applied, "lower_bound", None)) \
            else None
    parts = []
    for start in range(0, k, chosen.chunk):
        rows = z2[start:start + chosen.chunk]
        parts.append(_run(op, z, rows, "inv_sqrt", m, tol, chosen.reorth, check_every, check,
                          check_symmetry, progress, pre, reducer, bound,
                          strict_bound=strict and applied is None))
    y, info = parts[0] if len(parts) == 1 else _joined(parts)
    info = info._replace(memory_plan=chosen.describe(k))
    if applied is not None:
        y = applied.root(y if z.dim() == 2 else y.unsqueeze(0))
        y = y if z.dim() == 2 else y[0]
    return (restore(y), info) if return_info else restore(y)


def _sketch_product(hvp, z):
    """The unshifted block product for a sketch: blocks even when z (and so the user's
    callable) is a single vector."""
    if z.dim() == 2:
        return as_block_matvec(hvp, z, 0.0)
    single = as_block_matvec(hvp, z, 0.0)
    return lambda V: torch.cat([single(v.unsqueeze(0)) for v in V])


def _joined(parts):
    """One (x, FunmInfo) from the chunks' (their rows in order; products add up)."""
    xs, infos = zip(*parts)
    first = infos[0]
    fields = {f: torch.cat([getattr(i, f) for i in infos]) for f in first._fields[:5]}
    return torch.cat(xs), first._replace(products=sum(i.products for i in infos), **fields)


def lanczos(hvp, z, m, *, shift=0.0, reorth="full", shard_group=None):
    """The Lanczos basis and tridiagonal of A + shift I from z ((n,) or (k, n)).

    Returns LanczosResult(basis (k, m, n), alpha (k, m), beta (k, m-1), residual (k, n),
    steps (k,)) with A V^T = V^T T + residual e_m^T; the k axis is dropped for 1-D z.
    Columns that reach an invariant subspace stop early (see `steps`). shard_group: see the
    module docstring (basis and residual are then this rank's slices)."""
    _check_sharded_operator(hvp, shard_group)
    hvp, z, restore = adapt(hvp, z)  # NumPy/CuPy in: every field comes back as NumPy/CuPy
    z2 = check_arguments(z, m, None, shift, reorth, 1, shard_group is not None)
    reducer = _reducer(shard_group, z2, m, None, reorth, 1)
    matvec = as_block_matvec(hvp, z, float(shift))
    if reorth == "partial" and reducer is None:
        result, _ = lanczos_partial(matvec, z2, m, None, None)
    elif reorth in ("full", "partial"):  # sharded: full reorthogonalization (krylov.lanczos)
        result, _ = lanczos_full(matvec, z2, m, None, None, reducer)
    else:
        result, _ = lanczos_three_term(matvec, z2, m, None, None, keep_basis=True,
                                       reducer=reducer)
    result = LanczosResult(*(t[0] for t in result)) if z.dim() == 1 else result
    return LanczosResult(*map(restore, result))
