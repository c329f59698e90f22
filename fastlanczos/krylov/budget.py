"""memory_budget=: how many samples run side by side, and whether the basis is stored.

The stored basis is m x k x n values, the one large allocation of a run (k = 16 samples of
m = 100 steps of a 10M-parameter model: 64 GB in float32). Under a budget the samples run in
chunks of c columns whose basis fits; when not even one column's basis fits, the two-pass
mode (reorth="none": three vectors per column, the basis regenerated in a second pass, twice
the products) takes over. The other per-column vectors of a run (the product's input and
output, the residual, z, the result and the temporaries of a step) are counted as WORK
vectors; the operator's own memory (a model, cached Jacobians) is outside the budget.
"""

from typing import NamedTuple

from ..errors import LanczosInputError

WORK = 8  # (k, n) vectors besides the basis, full and partial reorthogonalization
WORK_TWO_PASS = 10  # the two-pass mode: v, v_prev, w, x, z and temporaries, both passes


class Plan(NamedTuple):
    chunk: int  # columns run side by side
    reorth: str  # what each chunk runs: the caller's choice, or "none" (two-pass)
    bytes: int  # the planned peak of the run's own allocations

    def describe(self, k):
        chunks = -(-k // self.chunk)
        mode = "two-pass (reorth='none')" if self.reorth == "none" else f"basis ({self.reorth})"
        return f"{mode}, {chunks} chunk{'s' * (chunks > 1)} of <= {self.chunk} samples"


def plan(k, n, m, itemsize, budget, reorth, fixed=0):
    """The largest chunk that fits budget bytes (fixed: bytes held throughout, e.g. a
    preconditioner's U); raises LanczosInputError when not even two-pass fits."""
    if budget is None:
        return Plan(k, reorth, (fixed + k * n * itemsize * ((m if reorth != "none" else 0)
                                                            + WORK)))
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise LanczosInputError(f"memory_budget must be a positive number of bytes, got "
                                f"{budget!r}")
    free = budget - fixed
    if reorth != "none":
        per_column = (m + WORK) * n * itemsize
        chunk = min(k, int(free // per_column))
        if chunk >= 1:
            return Plan(chunk, reorth, fixed + chunk * per_column)
    per_column = WORK_TWO_PASS * n * itemsize
    chunk = min(k, int(free // per_column))
    if chunk < 1:
        held = f", a preconditioner of {fixed:.3g} bytes" if fixed else ""
        raise LanczosInputError(
            f"memory_budget = {budget:.3g} bytes is too small: one sample needs "
            f"{fixed + per_column:.3g} bytes even in the two-pass mode (n = {n}, "
            f"{itemsize}-byte values{held})")
    return Plan(chunk, "none", fixed + chunk * per_column)
