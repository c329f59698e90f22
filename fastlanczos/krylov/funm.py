"""f(A) z by Lanczos: x = ||z|| V f(T) e_1, for a block of right-hand sides.

Stopping: at check steps, y_j = f(T_j) e_1 is compared with the previous check's y; since the
basis is orthonormal, ||x_j - x_prev|| / ||x_j|| = ||y_j - [y_prev; 0]|| / ||y_j||, an error
estimate that costs no pass over n. Checks are spaced further apart as j grows, so the small
eigen-solves stay a bounded share of the work.
"""

from typing import NamedTuple

import torch

from .adapters import adapt
from .lanczos import regenerate_three_term, run_lanczos
from .matfuncs import resolve
from .operator import as_block_matvec
from .tridiag import tridiag_eigh_unchecked
from .validate import check_arguments, check_finite_input, raise_if_invalid


class FunmInfo(NamedTuple):
    """Per-column diagnostics (tensors on z's device; 0-dim for a single vector z).

    steps: size of each column's tridiagonal; error_estimate: relative change of x between
    the last two checks (0 where an invariant subspace made the answer exact);
    converged: error_estimate <= tol (without tol: <= sqrt(eps) of z's dtype);
    breakdown: an invariant subspace was reached; min_ritz: smallest Ritz value;
    products: number of block operator products made."""

    steps: torch.Tensor
    error_estimate: torch.Tensor
    converged: torch.Tensor
    breakdown: torch.Tensor
    min_ritz: torch.Tensor
    products: int


def funm_apply(hvp, z, f, m, *, tol=None, shift=0.0, reorth="full", return_info=False,
               check_every=4, check=True):
    """f(A + shift I) z for z of shape (n,) or (k, n), A given by hvp (callable or dense matrix).

    f: "inv_sqrt", "sqrt", "inv", "exp", "log", or a callable on a float64 tensor of
    eigenvalues. m: the most Lanczos steps. tol: stop once every column's estimated relative
    error is below tol (checked every few steps, one host sync per check). reorth: "full"
    (CGS2 against the stored basis) or "none" (three vectors in memory; the basis is
    regenerated in a second pass, so twice the products). check=False skips the final
    validation, so a fixed-m run on a GPU never synchronizes with the host.
    """
    hvp, z, restore = adapt(hvp, z)  # NumPy/SciPy/CuPy in, the same out (info stays torch)
    name, fn, need = resolve(f)
    z2 = check_arguments(z, m, tol, shift, reorth, check_every)
    if check:
        check_finite_input(z2)
    calls = [0]
    product = as_block_matvec(hvp, z, float(shift))

    def matvec(V):
        calls[0] += 1
        return product(V)

    state = _Stopping(name, fn, need, tol, z2.dtype, check)
    schedule = _check_steps(m, check_every, tol is not None)
    result, tracker = run_lanczos(matvec, z2, m, reorth, state.on_check, schedule.__contains__)

    coeffs = state.y * tracker.znorm.unsqueeze(1)
    if reorth == "full":
        x = torch.bmm(coeffs.to(z2.dtype).unsqueeze(1), result.basis).squeeze(1)
    else:
        x = regenerate_three_term(matvec, z2, result.alpha, result.beta, tracker.steps, coeffs)

    if check:
        raise_if_invalid(tracker, state, name, need)
    info = FunmInfo(tracker.steps, state.err, state.err <= state.tol_or_default,
                    tracker.broken, state.min_ritz, calls[0])
    if z.dim() == 1:
        x = x[0]
        info = info._replace(**{k: getattr(info, k)[0] for k in info._fields[:-1]})
    return (restore(x), info) if return_info else restore(x)


def inv_sqrt_apply(hvp, z, m, *, tol=None, shift=0.0, reorth="full", return_info=False,
                   check_every=4, check=True):
    """(A + shift I)^{-1/2} z: with z ~ N(0, I), a sample of N(0, (A + shift I)^{-1})."""
    return funm_apply(hvp, z, "inv_sqrt", m, tol=tol, shift=shift, reorth=reorth,
                      return_info=return_info, check_every=check_every, check=check)


def _check_steps(m, every, tolerance_mode):
    """Steps (0-based) after which y is recomputed. Fixed m: two solves, for the final y and
    the error estimate. Tolerance: every `every` steps, spaced out to ~j/8 for large j."""
    if not tolerance_mode:
        return {s for s in (m - 1 - every, m - 1) if s >= 0}
    steps, c = {m - 1}, every
    while c < m:
        steps.add(c - 1)
        c += max(every, c // 8)
    return steps


class _Stopping:
    """Keeps the latest y = f(T_j) e_1, the error estimates and the tolerance decisions."""

    def __init__(self, name, fn, need, tol, dtype, check):
        self.name, self.fn, self.need, self.tol, self.check = name, fn, need, tol, check
        self.tol_or_default = tol if tol is not None else torch.finfo(dtype).eps ** 0.5
        self.y = self.err = self.min_ritz = None

    def on_check(self, t, j):
        y, theta = solve_projected(self.fn, t.alpha[:, : j + 1], t.beta[:, :j], t.steps,
                                   t.scale)
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
        if self.tol is None:
            return False  # fixed m: no decisions, so no host synchronization
        t.done |= self.err <= self.tol
        if self.check:  # the one host sync per check, validation included
            return bool(raise_if_invalid(t, self, self.name, self.need, also=t.done).all())
        return bool(t.done.all())


def solve_projected(fn, alpha, beta, steps, scale):
    """y = f(T) e_1 and the Ritz values for each column's leading steps x steps block.

    Columns have different sizes; each T is padded to the common size with a decoupled block
    (off-diagonal 0, diagonal = the column's scale, a positive value so f stays finite). Its
    eigenvectors have zero first components, so it adds nothing to y and its eigenvalues
    are never the minimum."""
    jj = alpha.shape[1]
    idx = torch.arange(jj, device=alpha.device)
    real = idx < steps.unsqueeze(1)
    pad = torch.where(scale > 0, scale, 1.0).unsqueeze(1)
    a = torch.where(real & torch.isfinite(alpha), alpha, pad)
    b = torch.where(real[:, 1:] & torch.isfinite(beta), beta, 0.0)
    theta, S = tridiag_eigh_unchecked(a, b)
    s1 = S[:, 0, :]
    weights = torch.where(s1 != 0, fn(theta) * s1, 0.0)
    y = torch.where(real, (S @ weights.unsqueeze(2)).squeeze(2), 0.0)
    return y, theta

