"""Lanczos on vectors split over the ranks of a torch.distributed group (parameter sharding).

Each rank holds its slice of every vector (its rows of z, of the basis, of w = A v) and the
product maps slices to slices. The recurrence needs only a few global numbers per step, all
sums or maxima of per-rank partials: the projections h = V w (k x (j+1), one all_reduce per
Gram-Schmidt pass for every column and every basis vector at once), the norms (sums of
squares) and the scale's largest entry. Everything of size m (T, its eigen-solve, the
stopping rule, every decision and error) is then replicated: each rank computes it from the
same all-reduced numbers, so the ranks take the same branches without further messages.

These steps are the plain-torch ones (reorth.py) with the reductions split from the
updates; the fused kernel does both in one pass and cannot be split, so it is not used here.
"""

import torch
import torch.distributed as dist

from ..errors import LanczosInputError
from .reorth import subtract_scaled_


class Reducer:
    """Sums and maxima over `group` (any torch.distributed backend: gloo, NCCL, ...), on the
    tensors' own device. n: the length of the whole vectors (the sum of the slices)."""

    def __init__(self, group, n: int):
        self.group, self.n = group, n

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t

    def norm(self, w: torch.Tensor) -> torch.Tensor:
        """(k,) float64 norms of the whole rows: the per-rank sums of squares, summed. Callers
        scale w into the safe range first (lanczos.output_scale), as the unsharded path does."""
        local = torch.linalg.vector_norm(w, dim=1, dtype=torch.float64)
        return self.sum_(local.square()).sqrt()

    def inf_norm(self, w: torch.Tensor) -> torch.Tensor:
        """(k,) float64 largest |entry| of the whole rows (a rank may hold no entries)."""
        if w.shape[1] == 0:
            local = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
        else:
            local = torch.linalg.vector_norm(w, ord=float("inf"), dim=1, dtype=torch.float64)
        return self.max_(local)


def shard_reducer(group, z2: torch.Tensor, m: int, tol, reorth: str, check_every: int):
    """The Reducer for rows z2 (k, n_local) split over group, after checking that every rank
    passes the same k, m, tol, reorth and check_every (they steer the replicated decisions: a
    rank that disagreed would wait forever in a collective the others never join) and that
    m <= n. Two small all_reduces, once per call."""
    if not (dist.is_available() and dist.is_initialized()):
        raise LanczosInputError("shard_group= needs torch.distributed to be initialized "
                                "(torch.distributed.init_process_group) on every rank")
    dev = z2.device
    mine = torch.tensor([z2.shape[0], m, -1.0 if tol is None else float(tol),
                         float(reorth == "full"), check_every], dtype=torch.float64, device=dev)
    both = torch.cat([mine, -mine])
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
    if not torch.equal(both[:5], -both[5:]):
        raise LanczosInputError("shard_group: the ranks passed different k (rows of z), m, tol, "
                                "reorth or check_every; every rank must run the same recurrence "
                                "on its own slice of the same vectors")
    n = torch.tensor([z2.shape[1]], dtype=torch.int64, device=dev)
    dist.all_reduce(n, op=dist.ReduceOp.SUM, group=group)
    n = int(n)
    if m > n:
        raise LanczosInputError(f"m = {m} exceeds n = {n} (the whole vectors' length, summed "
                                "over shard_group): use m <= n")
    return Reducer(group, n)


def cgs2_step_sharded(basis, w, j, reducer: Reducer):
    """reorth.cgs2_step_torch on slices: one all_reduce per projection block, one per norm."""
    V = basis[:, : j + 1]
    h1 = reducer.sum_(torch.bmm(V, w.unsqueeze(-1)))  # (k, j+1, 1): every column at once
    w.sub_(torch.bmm(V.transpose(1, 2), h1).squeeze(-1))
    h2 = reducer.sum_(torch.bmm(V, w.unsqueeze(-1)))
    w.sub_(torch.bmm(V.transpose(1, 2), h2).squeeze(-1))
    alpha = (h1[:, j, 0] + h2[:, j, 0]).double()
    beta = reducer.norm(w)
    if j + 1 < basis.shape[1]:
        inv = torch.where(beta > 0, 1.0 / beta, torch.zeros_like(beta))
        basis[:, j + 1] = w * inv.to(w.dtype).unsqueeze(1)
    return alpha, beta


def three_term_step_sharded(v, v_prev, beta_prev, w, reducer: Reducer):
    """reorth.three_term_step_torch on slices."""
    subtract_scaled_(w, beta_prev, v_prev)
    # pairwise sum(1), not a batched BLAS dot: in float32 that erred by 3e-4 at n = 1.33M
    alpha = reducer.sum_((v * w).sum(1))
    subtract_scaled_(w, alpha, v)
    return alpha.double(), reducer.norm(w)
