"""f(A) Z by Lanczos for a (k, n) block of right-hand sides: X = ||z|| V f(T) e_1 per column.

The engine's driver: it sees only tensors and a block product matvec(V) -> A V (already
checked and shifted, see fastlanczos.operators). The public entry points that take the
user's operator and z (fastlanczos.api) call it.
"""

import warnings
from typing import NamedTuple

import torch

from ..errors import (
    NonFiniteError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    TridiagonalConvergenceError,
)
from .lanczos import regenerate_three_term, run_lanczos
from .matfuncs import resolve
from .stopping import Stopping
from .symmetry import not_symmetric_message, probe_symmetry
from .validate import check_finite_input, raise_if_invalid

# Failures an asymmetric operator can cause; on any of them one more product tells whether
# asymmetry is the real cause.
SYMPTOMS = (NotPositiveDefiniteError, NonFiniteError, TridiagonalConvergenceError)


class FunmInfo(NamedTuple):
    """Per-column diagnostics (tensors on z's device; 0-dim for a single vector z).

    steps: size of each column's tridiagonal; error_estimate: with a lower bound of the
    spectrum (eig_lower_bound), the Gauss-Radau estimate of the returned x's relative error
    (krylov/radau.py) times its margin (stopping.with_margin: 1.15, 2 where the error is
    loose), with or without tol; else, with tol,
    the estimated relative error of the returned x (from its distances to earlier checked
    iterates, see krylov/stopping.py, up to 2x larger above 1e-2: stopping.rising_margin;
    where no estimate exists yet, the change since the
    previous check, or at a dense check the larger of that and the last one); without tol,
    the relative change of x over the last check_every steps; either way at least the
    accuracy z's dtype can attain for this operator and f (eps x the conditioning of f at
    T, krylov/stopping.py "the floor of the dtype"; a tol below it warns), and that floor
    alone where an invariant subspace made y exact (x is then exact up to rounding);
    converged: with tol, stopped by the rule (or at an invariant subspace) and
    error_estimate <= tol; without tol, error_estimate <= sqrt(eps) of z's dtype;
    breakdown: an invariant subspace was reached; min_ritz: smallest Ritz value;
    products: number of block operator products made (each on all k columns);
    preconditioner_rank, preconditioner_products: the rank of the preconditioner used
    (fastlanczos.inv_root_apply; 0 for none or a diagonal) and the vector products spent
    building it (its sketch's columns); memory_plan: with memory_budget, the chunks and
    mode chosen (krylov/budget.py)."""

    steps: torch.Tensor
    error_estimate: torch.Tensor
    converged: torch.Tensor
    breakdown: torch.Tensor
    min_ritz: torch.Tensor
    products: int
    preconditioner_rank: int = 0
    preconditioner_products: int = 0
    memory_plan: str = ""


def funm_block(matvec, z, f, m, *, tol=None, reorth="full", check_every=4, check=True,
               check_symmetry=False, single=False, progress=None, reducer=None,
               rule="current", bound=None, strict_bound=True):
    """(X, FunmInfo) with X = f(A) Z for the rows of z (k, n); arguments already validated
    (fastlanczos.krylov.validate.check_arguments). See fastlanczos.funm_apply.
    check_symmetry: probe u'Av = v'Au before the run (one more product); single: matvec
    takes one vector per call (z was 1-D), which the probe needs to know. progress: a
    krylov.progress.Progress (or None) told of every product and check. reducer: a
    sharded.Reducer when z holds this rank's slices of vectors split over ranks.
    rule="previous": the old stopping rule, for benchmarks (krylov/stopping.py).
    bound: a lower bound of the operator's spectrum (already checked: a float, positive where
    f needs a positive definite operator); the error estimate is then the Gauss-Radau one
    (krylov/radau.py), and a Ritz value below it raises LanczosInputError (strict_bound=False,
    for bounds derived by the library: clamped below the Ritz values instead)."""
    name, fn, need = resolve(f)
    if check:
        check_finite_input(z, reducer)
    if check_symmetry:
        probe = probe_symmetry(matvec, z, single, reducer)
        if not probe.symmetric:
            raise NotSymmetricError(not_symmetric_message(probe))
    calls = [0]

    def counted(V):
        calls[0] += 1
        if progress is not None:
            progress.step()
        return matvec(V)

    state = Stopping(name, fn, need, tol, z.dtype, check, m, check_every, rule, bound,
                     strict_bound)
    on_check = state.on_check
    if progress is not None:
        def on_check(t, j):
            stop = state.on_check(t, j)
            if tol is not None:  # this check has synchronized already: reading is free
                progress.checked(state.error_estimate(), t.done)
            return stop
    try:
        result, tracker = run_lanczos(counted, z, m, reorth, on_check, state.check_at,
                                      reducer)
        if check:
            raise_if_invalid(tracker, state, name, need)
    except SYMPTOMS as err:
        probe = probe_symmetry(matvec, z, single, reducer)
        if not probe.symmetric:
            raise NotSymmetricError(f"{not_symmetric_message(probe)}. It showed as: {err}") \
                from err
        raise

    coeffs = state.y * tracker.znorm.unsqueeze(1)
    if reorth != "none":  # the basis is stored
        x = torch.bmm(coeffs.to(z.dtype).unsqueeze(1), result.basis).squeeze(1)
    else:
        x = regenerate_three_term(counted, z, result.alpha, result.beta, tracker.steps, coeffs,
                                  reducer)
    err = state.error_estimate()
    if state.below_floor is not None and bool(state.below_floor.any()):
        warn_below_floor(tol, z.dtype, state.attainable[state.below_floor.to(err.device)])
    converged = err <= state.tol_or_default
    if tol is not None:  # and stopped by the rule (or exact): not just out of steps
        converged &= tracker.done
    info = FunmInfo(tracker.steps, err, converged, tracker.broken, state.min_ritz, calls[0])
    return x, info


def warn_below_floor(tol, dtype, floors):
    """tol is below what the dtype's rounding lets x attain for some columns (krylov/
    stopping.py, "the floor of the dtype"): their error_estimate is that floor, converged is
    False. floors: those columns' floors (read once, after the run)."""
    worst = float(floors.max())
    warnings.warn(f"tol={tol:g} is below the accuracy {str(dtype).replace('torch.', '')} "
                  f"arithmetic can attain for this operator and f ({len(floors)} column(s), "
                  f"up to {worst:.1e} relative: eps x the conditioning of f at A, an estimate "
                  f"on the safe side); those columns report converged=False. Use float64 for "
                  f"a tighter tol.",
                  RuntimeWarning, stacklevel=3)
