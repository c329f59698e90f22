"""rank="auto": grow the Nystrom sketch while the predicted saving pays for it.

Costs are counted in vector products. Doubling the rank from r costs r more products for the
sketch and saves k * (steps(r) - steps(2r)), steps predicted by nystrom_rank's model with the
next block extrapolated from the sketch's decay. Growth stops when that stops paying, when
the sketch's tail reaches twice the floor (what is left then barely conditions), or at
max_rank. The root's O(n r) work per step is left out of the growth rule: beside a curvature
product (a pass over the data) it is small, and timing it at small sizes measured Python
overhead, 0.15 to 0.55 of a product between runs. It does enter the last decision:
precondition="auto" keeps the sketch only where the predicted steps, made dearer by the
measured root (q), beat no preconditioner (a slowly decaying spectrum, e.g. a GMRF's,
predicts no saving at all and is declined after the first sketch).
"""

import time

import torch

from .nystrom import NystromSketch, low_rank_from
from .nystrom_rank import extrapolate, predicted_steps

START_RANK = 16
# A sketched top within this factor of its last value has no outliers to take away: capturing
# it shrinks kappa by at most this much, and a GMRF's (2-D Laplacian: 8.0 to 7.9 over the
# top 16) shows it. Declined without running the model on a probe of PROBE_RANK vectors, so
# "auto" costs that probe only: with 16, 8 samples of a 150 x 150 grid GMRF to 1e-6 took
# 1.048-1.066x the time of None (16 products beside 456, and the sketch's own work).
FLAT = 1.5
PROBE_RANK = 8


class Choice:
    """What auto decided, for the info and the README."""

    def __init__(self):
        self.trace = []  # (rank, tail eigenvalue, predicted steps now, predicted steps next)


def grow_auto(matvec, n, dtype, device, *, shift, floor, num_vectors, tol, max_rank,
              generator=None, start=START_RANK, sketch=None):
    """(LowRank preconditioner, predicted steps without it, predicted steps with it, choice).
    sketch: an existing NystromSketch of the same operator to grow (its products are not
    spent again)."""
    if sketch is None:
        sketch = NystromSketch(matvec, n, dtype, device, generator)
    tol = 1e-6 if tol is None else tol
    choice = Choice()
    before = sketch.products
    first = min(PROBE_RANK, start, max_rank) - sketch.rank
    t = _timed(lambda: sketch.grow(first), device)
    if first > 0:
        sketch.seconds_per_product = t / first
    t_product = getattr(sketch, "seconds_per_product", None) or t / max(sketch.rank, 1)
    pre = low_rank_from(sketch, shift, floor)
    if float(pre.lam[0]) < FLAT * float(pre.lam[-1]):
        choice.trace.append((sketch.rank, float(pre.lam[-1]), None, None))
        choice.predicted, choice.q = (0, 0), 0.0
        choice.new_products = sketch.products - before
        return pre, 0, 0, choice  # predicts no saving: "auto" declines
    sketch.grow(min(start, max_rank) - sketch.rank)  # the rest of the first sketch
    while True:
        pre = low_rank_from(sketch, shift, floor)
        r, lam = sketch.rank, pre.lam - shift
        bulk_floor = pre.mu if shift > 0 else pre.mu * 1e-3
        top_next = torch.cat([lam, extrapolate(lam, r)]) + shift
        now = predicted_steps(top_next, pre.mu, r, tol, bulk_floor)
        nxt = predicted_steps(top_next, pre.mu, min(2 * r, top_next.numel()), tol, bulk_floor)
        choice.trace.append((r, float(lam[-1] + shift), now, nxt))
        grow = min(r, max_rank - r)
        saving = num_vectors * (now - nxt)
        if grow <= 0 or lam[-1] + shift <= 2 * pre.mu or saving <= grow:
            break
        sketch.grow(grow)
    plain = predicted_steps(lam + shift, pre.mu, 0, tol, bulk_floor)
    choice.predicted = (plain, now)
    # the root's cost per step (two roots) as a fraction of a product: the fastest of three
    # timings, so a loaded machine does not make it look dearer than it is
    t_root = min(_timed(lambda: pre.root(sketch.omega), device) for _ in range(3))
    choice.q = 2 * t_root / sketch.rank / max(t_product, 1e-12)
    choice.new_products = sketch.products - before
    return pre, plain, now, choice


def worth_it(plain, with_pre, q):
    """Use the preconditioner when its steps, made dearer by the root (q: the root's cost per
    step as a fraction of a product), beat the plain steps by a margin."""
    return with_pre * (1.0 + q) < 0.9 * plain


def _timed(fn, device):
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t
