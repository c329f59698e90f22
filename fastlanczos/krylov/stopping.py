"""When to stop: the check schedule and the error estimate between checks.

At check steps, y_j = f(T_j) e_1 is compared with the previous check's y; since the basis is
orthonormal, ||x_j - x_prev|| / ||x_j|| = ||y_j - [y_prev; 0]|| / ||y_j||, an error estimate
that costs no pass over n. Checks are spaced further apart as j grows, so the small
eigen-solves stay a bounded share of the work.
"""

import torch

from .projected import solve_projected
from .validate import raise_if_invalid


def check_steps(m, every, tolerance_mode):
    """Steps (0-based) after which y is recomputed. Fixed m: two solves, for the final y and
    the error estimate. Tolerance: every `every` steps, spaced out to ~j/8 for large j."""
    if not tolerance_mode:
        return {s for s in (m - 1 - every, m - 1) if s >= 0}
    steps, c = {m - 1}, every
    while c < m:
        steps.add(c - 1)
        c += max(every, c // 8)
    return steps


class Stopping:
    """Keeps the latest y = f(T_j) e_1, the error estimates and the tolerance decisions."""

    def __init__(self, name, fn, need, tol, dtype, check):
        self.name, self.fn, self.need, self.tol, self.check = name, fn, need, tol, check
        self.tol_or_default = tol if tol is not None else torch.finfo(dtype).eps ** 0.5
        self.y = self.err = self.min_ritz = None

    def on_check(self, t, j):
        self._last = (t, j, self.y, self.err, t.done.clone())  # what repair() needs
        self._update(t, j, repair=False)
        if self.tol is None:
            return False  # fixed m: no decisions, so no host synchronization
        if self.check:  # the one host sync per check, validation included
            return bool(raise_if_invalid(t, self, self.name, self.need, also=t.done).all())
        return bool(t.done.all())

    def repair(self):
        """Redo the last check with LAPACK for the tridiagonals the compiled QL left unsolved
        (NaN Ritz values); returns the updated done mask."""
        t, j, self.y, self.err, done = self._last
        t.done.copy_(done)
        self._update(t, j, repair=True)
        return t.done

    def _update(self, t, j, repair):
        y, theta = solve_projected(self.fn, t.alpha[:, : j + 1], t.beta[:, :j], t.steps,
                                   t.scale, repair=repair)
        live = ~t.done
        if self.y is None:
            err = torch.where(t.znorm > 0, 1.0, 0.0).double()  # change from the zero guess
            self.err = err
        else:
            prev = torch.nn.functional.pad(self.y, (0, y.shape[1] - self.y.shape[1]))
            diff = torch.linalg.vector_norm(y - prev, dim=1)
            size = torch.linalg.vector_norm(y, dim=1)
            err = torch.where(size > 0, diff / size, diff)
            self.err = torch.where(live, err, self.err)
        self.err = torch.where(t.broken, 0.0, self.err)
        self.y, self.min_ritz = y, theta.min(dim=1).values
        if self.tol is not None:
            t.done |= self.err <= self.tol  # NaN (an unsolved T) never counts as converged
