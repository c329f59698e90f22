"""When to stop: the check schedule and the error estimate of the current iterate.

At a check, y_j = f(T_j) e_1 is compared with the previous check's y; since the basis is
orthonormal, ||x_j - x_prev|| / ||x_j|| = ||y_j - [y_prev; 0]|| / ||y_j||, with no pass over
n. That change measures the error of the *previous* iterate, so stopping on it overshoots
(tol 1e-6 used to give errors of 1e-8). With tol, the rule here estimates the error of y_j
itself: near the predicted stop it checks every step, fits log D_i (D_i the one-step change
||y_i - y_{i-1}|| / ||y_i||) over a window of the last steps by a line of slope log(rho),
and, since the error of a geometrically converging sequence is the sum of its remaining
steps, estimates

    ||y_inf - y_j|| / ||y_j||  ~  D_j rho / (1 - rho).

Single D_i scatter by ~30% around the trend (Lanczos errors are smooth, their one-step
changes are not), so the margin is the fit's largest under-prediction within the window,
and D_j itself when it lies above the line. Superlinear convergence (rho falling) makes the
window's rho an overestimate: safe. A stagnating stretch gives a slope near 0 and an
infinite estimate; a noise floor (changes below tol but no decay) is caught by the total
change over the window, which bounds the error of the window's first iterate.
Far from the stop, checks follow the old sparse schedule; the decay between them predicts
where tol will be met, and checking every step starts a window ahead of that step.
"""

import math

import torch

from .projected import solve_projected
from .validate import raise_if_invalid

WINDOW_MIN, WINDOW_SHARE = 6, 0.2  # the fit's window: max(6, 20% of the steps so far)
EARLY_STEPS = 16  # every step is checked up to here, so fast columns stop on time


def window(steps):
    return max(WINDOW_MIN, int(WINDOW_SHARE * steps))


def check_steps(m, every, tolerance_mode):
    """Steps (0-based) after which y is recomputed on the sparse schedule. Fixed m: two
    solves, for the final y and the error estimate. Tolerance: every `every` steps, spaced
    out to ~j/8 for large j (Stopping adds every step near the predicted stop)."""
    if not tolerance_mode:
        return {s for s in (m - 1 - every, m - 1) if s >= 0}
    steps, c = {m - 1}, every
    while c < m:
        steps.add(c - 1)
        c += max(every, c // 8)
    return steps


class Stopping:
    """Keeps the latest y = f(T_j) e_1, the error estimates and the tolerance decisions.

    check_at(j) is the schedule the recurrence asks (host-side: the sparse steps, and every
    step from `dense_from` on, which each check updates from the one read it makes)."""

    def __init__(self, name, fn, need, tol, dtype, check, m=1, every=4, rule="current"):
        """rule="previous" is the old rule (stop when the change between sparse checks is
        below tol), kept for benchmarks/bench_stopping.py to measure against."""
        self.name, self.fn, self.need, self.tol, self.check = name, fn, need, tol, check
        self.legacy = rule == "previous"
        self.tol_or_default = tol if tol is not None else torch.finfo(dtype).eps ** 0.5
        self.floor = 1000 * torch.finfo(dtype).eps  # one-step changes at rounding level
        self.y = self.err = self.min_ritz = None
        self.sparse = check_steps(m, every, tol is not None)
        self.dense_from = math.inf  # 0-based step from which every step is checked
        self.prev_j = self.prev_change = self.prev_gap = None
        self.run, self.predicted, self.reported = 0, None, None
        self.changes = None  # one-step changes D (k, m), filled at consecutive checks
        self.m, self.checks = m, 0

    def check_at(self, j):
        return j in self.sparse or (j >= self.dense_from and not self.legacy)

    def on_check(self, t, j):
        self.checks += 1
        self._last = (t, j, self.y, self.err, t.done.clone(), self._memory())
        predicted = self._update(t, j, repair=False)
        if self.tol is None:
            return False  # fixed m: no decisions, so no host synchronization
        live = (~t.done).double()
        packed = torch.stack([live, torch.where(t.done, math.inf, predicted)])
        if self.check:  # the one host sync per check, validation included
            read = raise_if_invalid(t, self, self.name, self.need, also=packed)
        else:
            read = packed.cpu()
        self._schedule(j, read[0], read[1])
        return not bool(read[0].any())

    def repair(self):
        """Redo the last check with LAPACK for the tridiagonals the compiled QL left unsolved
        (NaN Ritz values); returns the updated (live, predicted) rows."""
        t, j, self.y, self.err, done, memory = self._last
        self._restore(memory)
        t.done.copy_(done)
        predicted = self._update(t, j, repair=True)
        return torch.stack([(~t.done).double(), torch.where(t.done, math.inf, predicted)])

    def _memory(self):
        return (self.prev_j, self.prev_change, self.prev_gap, self.run, self.predicted,
                self.reported, None if self.changes is None else self.changes.clone())

    def _restore(self, memory):
        (self.prev_j, self.prev_change, self.prev_gap, self.run, self.predicted,
         self.reported, self.changes) = memory

    def _schedule(self, j, live, predicted):
        """Check every step from a window ahead of the earliest predicted stop; no decay
        seen (inf everywhere) goes back to the sparse schedule."""
        if bool(live.any()):
            first = float(predicted[live > 0].min())
            self.dense_from = first - window(first + 1) - 2 if math.isfinite(first) else math.inf
        if j + 1 < EARLY_STEPS:  # small T: checking every step costs little
            self.dense_from = 0

    def _update(self, t, j, repair):
        """Solve, estimate, mark done; returns the predicted (0-based) step where each
        column meets tol (inf where no decay is seen yet)."""
        y, theta = solve_projected(self.fn, t.alpha[:, : j + 1], t.beta[:, :j], t.steps,
                                   t.scale, repair=repair)
        live = ~t.done
        k = y.shape[0]
        inf = torch.full((k,), math.inf, dtype=torch.float64, device=y.device)
        if self.y is None:
            change = torch.where(t.znorm > 0, 1.0, 0.0).double()  # change from the zero guess
        else:
            prev = torch.nn.functional.pad(self.y, (0, y.shape[1] - self.y.shape[1]))
            diff = torch.linalg.vector_norm(y - prev, dim=1)
            size = torch.linalg.vector_norm(y, dim=1)
            change = torch.where(size > 0, diff / size, diff)
        estimate, predicted = change, inf
        if self.tol is None or self.legacy:
            self.reported = change
        else:
            estimate, predicted = self._estimate(j, change, live, inf)
        # While the window fills (or shows no decay) the estimate is inf: the reported one
        # stays the last finite one, which is some earlier iterate's error, so larger.
        if self.err is None:
            self.err = self.reported
        self.err = torch.where(live, torch.where(torch.isinf(estimate), self.reported, estimate),
                               self.err)
        self.err = torch.where(t.broken, 0.0, self.err)
        self.y, self.min_ritz = y, theta.min(dim=1).values
        if self.tol is not None:
            t.done |= self.err <= self.tol  # NaN (an unsolved T) never counts as converged
        return predicted

    def _estimate(self, j, change, live, inf):
        """(error estimate of y_j, predicted 0-based stop step) per column (module doc)."""
        if self.changes is None:
            self.changes = torch.full((change.shape[0], self.m), math.nan,
                                      dtype=torch.float64, device=change.device)
            self.predicted = inf
        consecutive = self.prev_j is not None and j == self.prev_j + 1
        self.run = self.run + 1 if consecutive else 0  # one-step changes known at j-run+1..j
        if consecutive:
            self.changes[:, j] = torch.where(live, change, self.changes[:, j])
            estimate = inf  # a one-step change alone says little: wait for the window
            w = window(j + 1)
            if self.run >= w:
                estimate, slope = fit_estimate(self.changes[:, j + 1 - w: j + 1], self.floor)
                steps_left = torch.log(self.tol / estimate) / slope
                # no decay (a stagnating stretch): back to the sparse schedule
                self.predicted = torch.where(slope < 0, j + steps_left.clamp_min(0.0), inf)
                self.predicted = torch.where(torch.isnan(self.predicted), inf, self.predicted)
        else:
            # Between sparse checks the change is about the previous check's error, and often
            # below it early on (log, tol 1e-3: stopping on it gave twice tol): it only
            # predicts the stop, from its decay since the check before.
            estimate = inf
            self.reported = change
            if self.prev_change is not None:
                slope = torch.log(change / self.prev_change) / self.prev_gap
                steps_left = torch.log(self.tol / change) / slope
                self.predicted = torch.where((slope < 0) & (change > 0),
                                             self.prev_j + steps_left.clamp_min(0.0), inf)
                self.predicted = torch.where(torch.isnan(self.predicted), inf, self.predicted)
            self.prev_change = change
            self.prev_gap = j - self.prev_j if self.prev_j is not None else j + 1
        self.prev_j = j
        return estimate, self.predicted


def fit_estimate(changes, floor):
    """(k, w) one-step changes, oldest first -> (error estimate of the newest iterate, slope
    of log change per step). A line through log D by least squares gives rho = e^slope;
    the estimate is D_newest rho / (1 - rho) with D_newest raised to the line plus its
    largest under-prediction in the window (whichever is larger). Where every change is
    below `floor` (rounding level of the vectors' dtype) y has stopped moving and the decay
    has no slope; the total change over the window, the error of its first iterate when
    the changes do not cancel, is the estimate then."""
    w = changes.shape[1]
    x = torch.arange(w, dtype=torch.float64, device=changes.device) - (w - 1)
    logd = torch.log(changes.clamp_min(torch.finfo(torch.float64).tiny))
    xc = x - x.mean()
    slope = (logd * xc).sum(dim=1) / (xc * xc).sum()
    at_newest = logd.mean(dim=1) - slope * x.mean()
    misfit = (logd - at_newest.unsqueeze(1) - slope.unsqueeze(1) * x).amax(dim=1)
    newest = torch.maximum(torch.exp(at_newest + misfit.clamp_min(0.0)), changes[:, -1])
    rho = torch.exp(slope)
    geometric = torch.where(slope < 0, newest * rho / (1.0 - rho), math.inf)
    stalled = (changes <= floor).all(dim=1)
    estimate = torch.where(stalled, torch.minimum(geometric, changes.sum(dim=1)), geometric)
    return torch.where(torch.isnan(estimate), math.inf, estimate), slope
