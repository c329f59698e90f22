"""Argument checks up front, and the result checks that need one read from the device.

Failures found on the device (non-finite operator output, non-positive Ritz values, a failed
eigen-solve) are gathered into one small tensor and read back once, so checking costs one
host synchronization per tolerance check or per call, never one per step.
"""

import math

import torch

from ..errors import LanczosInputError, NonFiniteError, NotPositiveDefiniteError
from .matfuncs import resolve

_ADVICE = ("Add damping / prior precision (the shift= argument adds shift*I), or use a "
           "positive semi-definite curvature such as the Gauss-Newton instead of the Hessian.")


def check_arguments(z, m, tol, shift, reorth, check_every, sharded=False):
    """Validate the scalar arguments and return z as a (k, n) block. sharded: z holds one
    rank's slice of each vector (it may be empty); m <= n is checked on the whole vectors
    (krylov.sharded.shard_reducer)."""
    if not isinstance(z, torch.Tensor):
        raise LanczosInputError(f"z must be a torch.Tensor, got {type(z).__name__}")
    if z.dim() not in (1, 2):
        raise LanczosInputError(f"z must have shape (n,) or (k, n), got {tuple(z.shape)}")
    if z.dtype not in (torch.float32, torch.float64):
        raise LanczosInputError(f"z must be float32 or float64, got {z.dtype}")
    n = z.shape[-1]
    if n < 1 and not sharded:
        raise LanczosInputError("z must have at least one entry per column (n >= 1)")
    if isinstance(m, bool) or not isinstance(m, int):
        raise LanczosInputError(f"m must be an int, got {type(m).__name__}")
    if m < 1:
        raise LanczosInputError(f"m (the number of Lanczos steps) must be >= 1, got {m}")
    if m > n and not sharded:
        raise LanczosInputError(f"m = {m} exceeds n = {n}: a Krylov space of this operator has "
                                f"at most n dimensions; use m <= {n}")
    if tol is not None and not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise LanczosInputError(f"tol must be a positive finite number or None, got {tol!r}")
    if not (isinstance(shift, (int, float)) and math.isfinite(shift)):
        raise LanczosInputError(f"shift must be a finite number, got {shift!r}")
    if reorth not in ("full", "partial", "none"):
        raise LanczosInputError(
            f"reorth must be 'full', 'partial' or 'none', got {reorth!r}")
    if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
        raise LanczosInputError(f"check_every must be a positive int, got {check_every!r}")
    return z.unsqueeze(0) if z.dim() == 1 else z


def check_bound(bound, f):
    """eig_lower_bound as a float (None stays None): finite, and positive where f needs a
    positive definite operator (its Gauss-Radau node sits at the bound, where f must be
    finite)."""
    if bound is None:
        return None
    if isinstance(bound, torch.Tensor) and bound.numel() == 1:
        bound = bound.item()
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
        raise LanczosInputError(f"eig_lower_bound must be a finite number or None, got {bound!r}")
    name, _, need = resolve(f)
    if need == "positive" and not bound > 0:
        raise LanczosInputError(f"eig_lower_bound must be positive for f={name!r} (it needs a "
                                f"positive definite operator), got {bound!r}")
    if need == "nonnegative" and bound < 0:
        raise LanczosInputError(f"eig_lower_bound must be >= 0 for f={name!r} (it needs a "
                                f"positive semi-definite operator), got {bound!r}")
    return float(bound)


def check_finite_input(z2, reducer=None):
    bad = (~torch.isfinite(z2)).any().double()
    if reducer is not None:  # every rank raises, or none does (else the others would hang)
        bad = reducer.sum_(bad.reshape(1))
    if bool(bad.any()):
        raise NonFiniteError("z contains NaN or inf")


def raise_if_invalid(tracker, state, name, need, also=None):
    """Read the device-side failure records once and raise the first problem found.

    `also` (a (k,) or (r, k) tensor) travels in the same device-to-host copy and is returned, so
    tolerance check costs one synchronization in all. Where the compiled QL left a
    tridiagonal unsolved, state.repair() solves it by LAPACK and the records are read again
    (a rare path: one more synchronization)."""
    rows = [tracker.first_nonfinite.double(), state.min_ritz, tracker.scale,
            tracker.steps.double(), (~torch.isfinite(state.y).all(dim=1)).double()]
    extra = [] if also is None else list(also.double().reshape(-1, rows[0].shape[0]))
    record = torch.stack(rows + extra).cpu()
    first_bad, ritz, scale, steps, f_bad = record[:5]
    bad = (first_bad >= 0).nonzero()
    if len(bad):
        c = int(bad[0])
        raise NonFiniteError(f"the operator (hvp) returned NaN or inf at Lanczos step "
                             f"{int(first_bad[c])} for column {c}")
    if torch.isnan(ritz).any():
        done = state.repair()
        return raise_if_invalid(tracker, state, name, need,
                                also=done if also is not None else None)
    if need is not None:
        _check_spectrum(ritz, scale, steps, tracker.eps, name, need)
    if state.bound is not None and state.strict_bound:
        _check_bound(ritz, scale, steps, tracker.eps, state.bound)
    if f_bad.any():
        c = int(f_bad.nonzero()[0])
        raise NonFiniteError(f"f={name!r} gave NaN or inf on the Ritz values of column {c} "
                             f"(smallest {float(ritz[c]):.3e}, after {int(steps[c])} Lanczos "
                             "steps): f must be finite on the operator's spectrum")
    return (record[5] if also.dim() == 1 else record[5:]) if also is not None else None


def _check_spectrum(ritz, scale, steps, eps, name, need):
    # 'nonnegative' (sqrt) tolerates rounding-level negatives; 'positive' tolerates nothing.
    floor = -100 * eps * scale if need == "nonnegative" else torch.zeros_like(scale)
    wrong = (ritz <= floor) if need == "positive" else (ritz < floor)
    if wrong.any():
        c = int(wrong.nonzero()[0])
        what = "positive definite" if need == "positive" else "positive semi-definite"
        raise NotPositiveDefiniteError(
            f"the operator is not {what}: smallest Ritz value {float(ritz[c]):.3e} "
            f"(column {c}, after {int(steps[c])} Lanczos steps), but f={name!r} needs a {what} "
            f"operator. {_ADVICE} The true smallest eigenvalue is at most the smallest Ritz "
            f"value, so the shift must exceed {abs(float(ritz[c])):.3e}.")


# Ritz values this far (times eps ||A||) below a bound are rounding of the products, not
# proof that it is none
BOUND_ROUNDING = 100


def below_bound(ritz, scale, eps, bound):
    """Where a Ritz value lies below the bound beyond the products' rounding: the bound is
    then proven wrong (Ritz values lie inside the spectrum)."""
    return ritz < bound - BOUND_ROUNDING * eps * scale


def _check_bound(ritz, scale, steps, eps, bound):
    """A Ritz value below the bound proves it is none: its estimate would be too small."""
    wrong = below_bound(ritz, scale, eps, bound)
    if wrong.any():
        c = int(wrong.nonzero()[0])
        raise LanczosInputError(
            f"eig_lower_bound is not a lower bound of the operator's spectrum: column {c} has "
            f"a Ritz value {float(ritz[c]):.6e} below the bound {bound:.6e} after "
            f"{int(steps[c])} Lanczos steps (Ritz values lie within the spectrum). Pass a "
            f"smaller bound, or none (the stopping rule then estimates the error from the "
            f"iterates' moves).")
