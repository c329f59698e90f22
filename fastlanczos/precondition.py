"""Choosing and building preconditioners for exact preconditioned sampling (the public
nystrom_preconditioner, and what precondition= means in inv_root_apply, sample_gaussian and
LaplacePosterior.sample). The preconditioners themselves and the sketch are in
fastlanczos.krylov (precondition.py, nystrom.py, nystrom_auto.py)."""

import torch

from .errors import LanczosInputError
from .krylov.nystrom import NystromSketch, low_rank_from
from .krylov.nystrom_auto import grow_auto, worth_it
from .krylov.precondition import Diagonal
from .operators import adapt, as_block_matvec

PRECONDITIONERS = ("auto", "nystrom", "diag", None)


def rank_limit(n, cap=None):
    """The largest sketch rank: n // 2, 1024, and cap (memory_budget's or the caller's)."""
    return max(min(n // 2, 1024, n if cap is None else int(cap)), 1)


def nystrom_preconditioner(hvp, n, rank="auto", *, shift=0.0, floor=None, num_vectors=8,
                           tol=1e-6, max_rank=None, dtype=None, device=None, generator=None):
    """A low-rank-plus-scalar preconditioner P = U^T diag(max(lam + shift, mu)) U
    + mu (I - U^T U) for hvp + shift I, from a randomized Nystrom sketch of hvp (PSD, e.g. a
    curvature without its prior): U (r, n), lam its sketched top eigenvalues, mu = floor
    (default: shift when positive, else the sketch's last eigenvalue). Applying G = P^{-1/2}
    costs O(n r) per vector. Pass it as precondition= to inv_root_apply.

    rank: an int, or "auto": start at 16 and double while a model of the spectrum (the
    sketch's eigenvalues over a bulk down to the floor) predicts that the products saved on
    num_vectors samples to tol exceed the products the larger sketch costs, up to max_rank
    (default min(n // 2, 1024)). Each growth is one block product of
    the new columns. dtype/device: of the vectors hvp takes (default: hvp's own if it is a
    matrix, else float64 / CPU). The object has root(V), rank, products (vector products
    spent), lam, mu, u; with rank="auto" also .choice (the growth trace)."""
    like = _probe(hvp, n, dtype, device)
    hvp, _, _ = adapt(hvp, like)
    matvec = as_block_matvec(hvp, like, 0.0)
    if rank == "auto":
        pre, _, _, choice = grow_auto(matvec, n, like.dtype, like.device, shift=float(shift),
                                      floor=floor, num_vectors=num_vectors, tol=tol,
                                      max_rank=rank_limit(n, max_rank), generator=generator)
        pre.choice = choice
        return pre
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= n:
        raise LanczosInputError(f"rank must be 'auto' or an int in [1, n = {n}], got {rank!r}")
    sketch = NystromSketch(matvec, n, like.dtype, like.device, generator)
    sketch.grow(rank)
    return low_rank_from(sketch, float(shift), floor)


def choose_preconditioner(precondition, sketched, z2, shift, tol, *, floor=None, sketch=None,
                          diagonal=None, max_rank=None):
    """The preconditioner object for precondition= (None for none).

    sketched: the block product of the PSD operator to sketch (without shift); z2: the (k, n)
    block to be sampled; diagonal: a callable giving the operator's diagonal (for "diag");
    sketch: a NystromSketch to grow and reuse (LaplacePosterior keeps one per curvature);
    max_rank: a cap on the sketch (memory_budget's), default min(n // 2, 1024)."""
    if precondition is None or isinstance(precondition, Declined):
        return precondition
    if isinstance(precondition, str):
        if precondition not in PRECONDITIONERS:
            raise LanczosInputError(f"precondition must be one of {PRECONDITIONERS}, a (n,) "
                                    f"tensor or a preconditioner object, got {precondition!r}")
        if precondition == "diag":
            return _diagonal(diagonal() + shift)
        k, n = z2.shape
        pre, plain, with_pre, choice = grow_auto(
            sketched, n, z2.dtype, z2.device, shift=shift, floor=floor, num_vectors=k, tol=tol,
            max_rank=rank_limit(n, max_rank), sketch=sketch)
        pre.choice = choice
        pre.products = choice.new_products  # this call's cost: a kept sketch is not re-paid
        if precondition == "auto" and not worth_it(plain, with_pre, choice.q):
            return Declined(pre.products, choice)
        return pre
    if isinstance(precondition, torch.Tensor):
        return _diagonal(precondition.to(dtype=z2.dtype, device=z2.device))
    if callable(getattr(precondition, "root", None)):
        precondition.rank = getattr(precondition, "rank", 0)
        precondition.products = getattr(precondition, "products", 0)
        return precondition
    raise LanczosInputError(f"precondition must be one of {PRECONDITIONERS}, a (n,) tensor or "
                            f"an object with root(V), got {type(precondition).__name__}")


class Declined:
    """precondition="auto" chose none: nothing is applied (active() gives None), but the
    sketch it looked at was paid for, and info reports that."""

    rank = 0

    def __init__(self, products, choice):
        self.products, self.choice = products, choice


def active(pre):
    """The preconditioner to apply: None for none and for a declined "auto"."""
    return None if isinstance(pre, Declined) else pre


def _probe(hvp, n, dtype, device):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LanczosInputError(f"n must be a positive int, got {n!r}")
    own = getattr(hvp, "dtype", None)
    if dtype is None:
        dtype = own if isinstance(own, torch.dtype) else (
            torch.float32 if str(own) == "float32" else torch.float64)
    if device is None:
        device = hvp.device if isinstance(hvp, torch.Tensor) else "cpu"
    return torch.empty(1, n, dtype=dtype, device=device)


def _diagonal(d):
    if d.dim() != 1 or not bool(torch.isfinite(d).all()) or not bool((d > 0).all()):
        raise LanczosInputError(f"a diagonal preconditioner must be a positive, finite (n,) "
                                f"tensor (shape {tuple(d.shape)})")
    return Diagonal(d)
