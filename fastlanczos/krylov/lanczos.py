"""The batched Lanczos recurrence: k independent Krylov spaces built in lockstep.

One operator product per step on the whole (k, n) block. Per-column bookkeeping (how many
steps each column has taken, whether it broke down or converged) lives in small device
tensors and is applied with masks, so a fixed-m run never reads anything back to the host.

A column is *done* when it reaches an invariant subspace (beta small relative to ||A v_j||,
never an absolute threshold) or, in tolerance mode, when its error estimate
drops below tol. A done column stops growing its tridiagonal; its later basis vectors are
zeroed so the operator only ever sees finite input.

Scale: sums of squares overflow float64 once entries pass ~1e154 and underflow below
~1e-154, long before the products themselves do. So the first product fixes a power of two
c per column that brings ||A v_0|| near 1 (c = 1 inside a wide safe range, so ordinary
operators run bit for bit as without it); every product is multiplied by c, which is exact,
and alpha, beta are stored divided by c: T is that of A, the basis is unchanged.
"""

import functools
from typing import NamedTuple

import torch

from . import ops
from . import reorth as reorth_steps
from .backend import use_extension
from .orthogonality import OmegaEstimate
from .reorth import (
    cgs2_step_torch,
    masked_cgs_step_torch,
    row_norm,
    subtract_scaled_,
    three_term_step_scaled_torch,
    three_term_step_torch,
)
from .sharded import cgs2_step_sharded, three_term_step_sharded


def breakdown_factor(n: int, eps: float) -> float:
    """beta_j <= factor * ||A v_j|| ends a column: the new direction is then cancellation noise
    at the level of the product's own rounding error (which grows like sqrt(n)), and
    normalizing it would feed the recurrence a random direction. Measuring against ||A v_j||
    rather than ||T|| keeps legitimately small betas of a wide spectrum's tail alive."""
    return min(max(64.0 * n**0.5, 64.0), 2048.0) * eps


class LanczosResult(NamedTuple):
    """basis (k, m, n) orthonormal rows; alpha (k, m) and beta (k, m-1) of T (float64);
    residual (k, n) with A V^T = V^T T + residual e_m^T; steps (k,) size of each column's T
    (entries of alpha/beta past a column's steps are meaningless)."""

    basis: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    residual: torch.Tensor
    steps: torch.Tensor


class _Tracker:
    """Per-column state shared by both recurrences (all device tensors, no host reads).
    reducer: a sharded.Reducer when z's rows are slices split over ranks (None: whole rows)."""

    def __init__(self, z: torch.Tensor, m: int, reducer=None):
        k, dev = z.shape[0], z.device
        self.reducer = reducer
        self.eps = torch.finfo(z.dtype).eps
        self.tiny = breakdown_factor(z.shape[1] if reducer is None else reducer.n, self.eps)
        self.alpha = torch.zeros(k, m, dtype=torch.float64, device=dev)
        self.beta = torch.zeros(k, m, dtype=torch.float64, device=dev)
        self.znorm = safe_norm(z, reducer)
        self.done = self.znorm == 0  # a zero column has nothing to build
        self.broken = self.done.clone()
        self.steps = torch.zeros(k, dtype=torch.int64, device=dev)
        self.scale = torch.zeros(k, dtype=torch.float64, device=dev)
        self.first_nonfinite = torch.full((k,), -1, dtype=torch.int64, device=dev)

    def start_vector(self, z: torch.Tensor) -> torch.Tensor:
        inv = torch.where(self.done, torch.zeros_like(self.znorm), 1.0 / self.znorm)
        return z * inv.to(z.dtype).unsqueeze(1)

    def saw_output(self, w: torch.Tensor, j: int):
        """Scale w = A v_j in place by c (chosen at j = 0, see the module docstring), note
        ||c A v_j|| and whether it is finite."""
        self.choose_scale(w, j)
        w.mul_(self.c.to(w.dtype).unsqueeze(1))
        self.saw_norm(row_norm(w) if self.reducer is None else self.reducer.norm(w), j)

    def choose_scale(self, w: torch.Tensor, j: int):
        if j == 0:
            self.c = output_scale(w, self.reducer)

    def saw_norm(self, wnorm: torch.Tensor, j: int):
        """Note ||c A v_j|| (float64 (k,)) and whether it is finite."""
        self.wnorm = wnorm
        bad = ~torch.isfinite(self.wnorm) & (self.first_nonfinite < 0)
        self.first_nonfinite = torch.where(bad, j, self.first_nonfinite)

    def record(self, j: int, a: torch.Tensor, b: torch.Tensor):
        """Store step j's coefficients (of c A: stored as those of A); returns the mask of
        columns that are now done."""
        live = ~self.done
        self.alpha[:, j] = a / self.c
        self.beta[:, j] = b / self.c
        a, b = self.alpha[:, j], self.beta[:, j]
        self.steps += live
        size = torch.fmax(a.abs(), b)  # fmax: a NaN here is reported later, not spread
        self.scale = torch.where(live, torch.fmax(self.scale, size), self.scale)
        breaks = live & (b * self.c <= self.tiny * self.wnorm)
        self.broken |= breaks
        self.done |= breaks
        return self.done


def run_lanczos(matvec, z: torch.Tensor, m: int, reorth: str = "full", on_check=None,
                check_at=None, reducer=None):
    """Run up to m steps from the rows of z (k, n). matvec maps (k, n) -> (k, n).

    on_check(tracker, j) is called after the steps listed by check_at(j) -> bool; it may mark
    columns done (tolerance mode) and returns True to stop early. Returns (LanczosResult,
    tracker); with reorth="none" the basis is not stored (result.basis is None).
    reducer: a sharded.Reducer when z holds this rank's slices of the vectors.
    """
    if reorth == "partial" and reducer is None:
        return lanczos_partial(matvec, z, m, on_check, check_at)
    if reorth in ("full", "partial"):  # sharded vectors: the partial step has no sharded form
        return lanczos_full(matvec, z, m, on_check, check_at, reducer)
    return lanczos_three_term(matvec, z, m, on_check, check_at, keep_basis=False,
                              reducer=reducer)


def lanczos_full(matvec, z, m, on_check, check_at, reducer=None) -> LanczosResult:
    k, n = z.shape
    t = _Tracker(z, m, reducer)
    basis = torch.empty(k, m, n, dtype=z.dtype, device=z.device)
    basis[:, 0] = t.start_vector(z)
    # The kernel wherever it is built, even where torch's BLAS is faster (float32 on one CPU
    # thread, 1.2-1.5x): BLAS rounds w -= V^T h in float32 against ||A v_j||, the kernel once
    # from float64, and on logspace spectra (n = 1e5, 1 thread) full's float32 error floor was
    # 8-10x lower with the kernel (2.8e-7 vs 2.7e-6 at kappa 1e2, 1.0e-6 vs 7.9e-6 at 1e3).
    # That also settled k = 1 float32, which ran on torch: the kernel is now 1.0-1.35x
    # faster there from two threads on, and 4-16x more accurate.
    compiled = reducer is None and use_extension(z.device)
    w = None
    for j in range(m):
        w = _fresh(matvec(basis[:, j]), basis)
        t.saw_output(w, j)
        step = ops.reorth_step if compiled and j < ops.REORTH_MAX_ROWS else cgs2_step_torch
        if reducer is not None:
            a, b = cgs2_step_sharded(basis, w, j, reducer)
        else:
            a, b = step(basis, w, j)  # w becomes the residual; basis[:, j+1] = w / b
        done = t.record(j, a, b)
        _zero_done_rows(basis, j + 1, done)
        if on_check is not None and check_at(j) and on_check(t, j):
            m = j + 1
            break
    return _result(t, basis[:, :m], w, m), t


def lanczos_partial(matvec, z, m, on_check, check_at) -> LanczosResult:
    """Partial reorthogonalization (Simon 1984): the three-term update every step, and
    Gram-Schmidt against the stored basis only for the columns whose estimated loss of
    orthogonality (orthogonality.OmegaEstimate) passed sqrt(eps), decided on the device.
    The tracker gains .reorth_count (k,): steps each column was reorthogonalized at."""
    k, n = z.shape
    t = _Tracker(z, m)
    omega = OmegaEstimate(k, m, z.dtype, z.device)
    basis = torch.empty(k, m, n, dtype=z.dtype, device=z.device)
    basis[:, 0] = t.start_vector(z)
    extension = use_extension(z.device)
    masked = extension and not blas_passes_faster(z)
    # The plain update is elementwise: its kernel (two passes over w, not six) wins for any k.
    three_term = ops.three_term_step if extension else functools.partial(
        three_term_step_scaled_torch, work=torch.empty_like(z))
    b, w = torch.zeros_like(z[:, 0], dtype=torch.float64), None
    for j in range(m):
        w = _fresh(matvec(basis[:, j]), basis)
        t.choose_scale(w, j)
        a, b, wnorm = three_term(basis, w, b, t.c, j)  # w = c A v_j, made the residual
        t.saw_norm(wnorm, j)
        passes = omega.passes(j, a, b, ~t.done)
        step = (ops.reorth_step_masked if masked and j < ops.REORTH_MAX_ROWS
                else masked_cgs_step_torch)
        h, b = step(basis, w, passes, j, b)  # basis[:, j+1] = w / b
        done = t.record(j, a + h, b)
        _zero_done_rows(basis, j + 1, done)
        if on_check is not None and check_at(j) and on_check(t, j):
            m = j + 1
            break
    t.reorth_count = omega.count
    return _result(t, basis[:, :m], w, m), t


def blas_passes_faster(z: torch.Tensor) -> bool:
    """Whether partial's Gram-Schmidt passes run faster as torch's per-column BLAS products
    than in the masked kernel: float32 on one CPU thread, n >= 1e5. There MKL's sgemv streams
    V at 20-24 GB/s, the kernel's float64-accumulating loop at 12-17 (1.1-1.7x at n = 1e5 and
    1e6, j = 15 / 62, 1 or 2 passes; at n = 1e4 and for float64 the two went both ways); from
    two threads on the kernel's split over the cores wins. The sgemv accumulates in float32,
    harmless for these passes (unlike for full's, see lanczos_full): w is the three-term
    residual, already orthogonal to v_j, v_{j-1} and at most sqrt(eps) along the rest, so the
    coefficients are small and their terms of random sign (measured: the same error floors
    as the kernel on logspace spectra; tests/test_partial_reorth.py checks the orthogonality
    and the accuracy on this branch)."""
    return (z.device.type == "cpu" and z.dtype == torch.float32 and z.shape[1] >= 100_000
            and torch.get_num_threads() == 1)


def lanczos_three_term(matvec, z, m, on_check, check_at, keep_basis, reducer=None):
    """Plain recurrence; keeps three vectors unless keep_basis (then it also stores V)."""
    k, n = z.shape
    t = _Tracker(z, m, reducer)
    v_prev = torch.zeros_like(z)
    v = t.start_vector(z)
    work = torch.empty_like(z)
    basis = torch.empty(k, m, n, dtype=z.dtype, device=z.device) if keep_basis else None
    b = torch.zeros(k, dtype=torch.float64, device=z.device)
    w = None
    for j in range(m):
        if keep_basis:
            basis[:, j] = v
        w = _fresh(matvec(v), v)
        t.saw_output(w, j)
        if reducer is None:
            a, b = three_term_step_torch(v, v_prev, b, w, work)
        else:
            a, b = three_term_step_sharded(v, v_prev, b, w, reducer)
        done = t.record(j, a, b)
        # v_prev's buffer is free now: the next vector goes there (no new (k, n) tensor)
        v_prev, v = v, _next_vector(w, b, done, out=v_prev)
        if on_check is not None and check_at(j) and on_check(t, j):
            m = j + 1
            break
    return _result(t, basis[:, :m] if keep_basis else None, w, m), t


def regenerate_three_term(matvec, z, alpha, beta, steps, coeffs, reducer=None):
    """Second pass of the O(n)-memory mode: rebuild v_j with the stored alpha/beta (same ops,
    same rounding as the first pass) and return sum_j coeffs[:, j] v_j."""
    k, m = coeffs.shape
    t = _Tracker(z, 1, reducer)
    v_prev = torch.zeros_like(z)
    v = t.start_vector(z)
    x = torch.zeros_like(z)
    b = torch.zeros(k, dtype=torch.float64, device=z.device)
    c = None
    for j in range(m):
        x.addcmul_(v, coeffs[:, j].to(z.dtype).unsqueeze(1))
        if j + 1 == m:
            break
        w = _fresh(matvec(v), v)
        c = output_scale(w, reducer) if c is None else c  # the first pass's: same w_0, same c
        w.mul_(c.to(w.dtype).unsqueeze(1))
        subtract_scaled_(w, b, v_prev)  # the first pass's ops (three_term_step_torch)
        subtract_scaled_(w, alpha[:, j] * c, v)
        b = beta[:, j] * c
        v_prev, v = v, _next_vector(w, b, steps <= j + 1, out=v_prev)
    return x


def _zero_done_rows(basis, row, done):
    """basis[:, row] = 0 for the done columns, so the operator sees zeros there. On the CPU
    the mask is in host memory: only those rows are written (a masked_fill_ of all k rows was
    a (k, n) pass every step, ~15 ms at k = 8, n = 1.33M, mostly with nothing to zero)."""
    if row >= basis.shape[1]:
        return
    if reorth_steps.branch_on_mask(done.device):
        for b in done.nonzero().flatten().tolist():
            basis[b, row].zero_()
    else:
        basis[:, row].masked_fill_(done.unsqueeze(1), 0.0)


def _next_vector(w, b, done, out=None):
    inv = torch.where(done | (b == 0), torch.zeros_like(b), 1.0 / b)
    return torch.mul(w, inv.to(w.dtype).unsqueeze(1), out=out)


def _fresh(w: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """The recurrence updates w in place: never let that write through into the user's
    tensors or our basis (an identity hvp returns its input)."""
    if shares_storage(w, owner) or not w.is_contiguous():
        return w.contiguous().clone()
    return w


def shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a and b live in one storage (an identity hvp returns its input)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _result(t: _Tracker, basis, w, m) -> LanczosResult:
    residual = w / t.c.to(w.dtype).unsqueeze(1)  # of A, not of c A
    return LanczosResult(basis, t.alpha[:, :m], t.beta[:, : m - 1], residual, t.steps)


# Inside [2^-SAFE_EXPONENT, 2^SAFE_EXPONENT] a float64 sum of n squares neither overflows
# nor loses the residual's digits to underflow (entries 1e-16 below the largest stay above
# 2^-1022 when squared), so products there are left as they are.
SAFE_EXPONENT = 256


def output_scale(w: torch.Tensor, reducer=None) -> torch.Tensor:
    """(k,) float64 powers of two c: 1 where the largest |entry| of a row is in the safe
    range (or zero, or not finite: reported elsewhere), else 2^-e with e its exponent."""
    if reducer is None:
        big = torch.linalg.vector_norm(w, ord=float("inf"), dim=1, dtype=torch.float64)
    else:
        big = reducer.inf_norm(w)
    safe = (big == 0) | ~torch.isfinite(big) | (
        (big >= 2.0**-SAFE_EXPONENT) & (big <= 2.0**SAFE_EXPONENT))
    exponent = torch.frexp(big).exponent
    return torch.where(safe, 1.0, torch.ldexp(torch.ones_like(big), -exponent))


def safe_norm(z: torch.Tensor, reducer=None) -> torch.Tensor:
    """(k,) float64 row norms that neither overflow nor underflow: the largest entry is
    divided out first (as LAPACK's dnrm2 does), exactly, by a power of two."""
    c = output_scale(z, reducer)
    if reducer is not None:
        return reducer.norm(z * c.to(z.dtype).unsqueeze(1)) / c
    return torch.linalg.vector_norm(z * c.to(z.dtype).unsqueeze(1), dim=1,
                                    dtype=torch.float64) / c
