"""Stochastic Lanczos quadrature for log det(B + delta I) and traces, every delta from ONE run.

For a probe z, e1^T f(T) e1 ||z||^2 ~ z^T f(B) z (Gauss quadrature with the Ritz values theta
and weights w = (first components of T's eigenvectors)^2), and E[z^T f(B) z] = tr f(B) for
probes with E[z z^T] = I. Krylov spaces are shift invariant: Lanczos on B + delta I builds the
same basis with T + delta I, so eig(T + delta I) = theta + delta with the same weights, and one
eigendecomposition per probe gives tr log(B + delta I) and tr (B + delta I)^{-1} for every
scalar delta with no further products. Rademacher probes (||z||^2 = n) are the default: the
estimator's variance is 2 sum_{i != j} f(B)_ij^2, so the identity part of log(B + delta I)
(large when the prior dominates, as for a GGN's null space) costs nothing.

Traces of blocks D_l (e.g. one layer's parameters): z^T D_l (B + delta I)^{-1} z, with
(B + delta I)^{-1} z = ||z|| V S diag(1 / (theta + delta)) S^T e1. The basis is read once after
the run to form the small coefficients (D_l z)^T V S (probes x blocks x m); then every delta
is again free. The same probes serve the full trace and every block (no extra products, as
per-block probe splitting would need); the price is a higher variance for small blocks,
which the reported standard error shows.
"""

import math
from typing import NamedTuple

import torch

from ..errors import LanczosInputError, NotPositiveDefiniteError
from .lanczos import lanczos_full
from .tridiag import tridiag_eigh


class Estimate(NamedTuple):
    """A Monte-Carlo estimate over probes: value and its standard error (std / sqrt(s))."""

    value: float
    stderr: float


def rademacher(s, n, *, dtype=torch.float64, device=None, generator=None):
    """(s, n) probes of independent +-1 entries."""
    bits = torch.randint(0, 2, (s, n), generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


class ShiftedQuadrature:
    """Lanczos on B from probes z (s, n), kept as the Ritz values and weights per probe.

    matvec: V (k, n) -> B V. m: Lanczos steps (full reorthogonalization). sketch: r > 0 adds
    Hutch++ deflation (Meyer et al. 2021): one product Y = B Omega (Omega Gaussian (r, n),
    from generator) gives an orthonormal Q (r columns) of B's dominant range; then
    tr f(B) = tr(Q^T f(B) Q) + tr(P f(B) P), P = I - Q Q^T (exact for any f), the first term
    summed over Q's columns (accurate: they are almost eigenvectors), the second averaged over
    the deflated probes P z, whose variance no longer carries the top eigenvalues. All r + s
    columns run in one lockstep Lanczos, so this costs one product more. blocks: optional
    list of (start, stop) index ranges whose traces block_traces() estimates. keep_basis:
    keep V so apply() can form ||z|| V g(T + delta I) e1 for any delta (e.g. samples
    (B + delta I)^{-1/2} z for a whole grid of prior precisions from one run).
    """

    def __init__(self, matvec, z, m, *, sketch=0, generator=None, blocks=None,
                 keep_basis=False):
        if z.dim() != 2 or z.shape[0] < 1:
            raise LanczosInputError(f"probes z must have shape (s, n), got {tuple(z.shape)}")
        s, n = z.shape
        if not 1 <= m <= n:
            raise LanczosInputError(f"m must be in [1, n = {n}], got {m}")
        if not 0 <= sketch < n:
            raise LanczosInputError(f"sketch must be in [0, n), got {sketch}")
        calls = [0]

        def counted(V):
            calls[0] += 1
            return matvec(V)

        exact = None
        if sketch:
            omega = torch.randn(sketch, n, generator=generator, dtype=z.dtype,
                                device=z.device)
            exact = torch.linalg.qr(counted(omega).T)[0].T  # (r, n) orthonormal rows
            z = z - (z @ exact.T) @ exact  # P z
            z = torch.cat([exact, z])
        result, tracker = lanczos_full(counted, z, m, None, None)
        self.n, self.m, self.probes, self.sketch = n, m, s, sketch
        self.products = calls[0]
        self.steps = result.steps
        alpha, beta = _decoupled(result.alpha, result.beta, result.steps)
        self.ritz, S = tridiag_eigh(alpha, beta)  # float64, (r + s, m), (r + s, m, m)
        self.first = S[:, 0, :]  # first components of the eigenvectors
        self.weights = self.first.square()
        self.znorm2 = tracker.znorm.double().square()
        self.blocks = None
        if blocks is not None:
            self.blocks = [(int(a), int(b)) for a, b in blocks]
            # c[z, l, i] = (D_l z)^T V s_i: the basis read once, then dropped
            rows = [torch.bmm(result.basis[:, :, a:b], z[:, a:b].unsqueeze(2)).squeeze(2)
                    for a, b in self.blocks]
            proj = torch.stack(rows, 1).double()  # (r + s, L, m)
            self._block_coeffs = torch.bmm(proj, S) * self.first.unsqueeze(1)
            self._block_norms = torch.stack(
                [z[:, a:b].double().square().sum(1) for a, b in self.blocks], 1)
            # E ||D_l P z||^2 = tr(D_l P) = n_l - ||D_l Q||_F^2
            self._block_expected = torch.tensor(
                [float(b - a) - (exact[:, a:b].double().square().sum().item() if sketch else 0.0)
                 for a, b in self.blocks], dtype=torch.float64, device=z.device)
        self.basis = result.basis if keep_basis else None
        self._S = S if keep_basis else None
        self._dtype = z.dtype

    def _shifted(self, delta):
        shifted = self.ritz + delta
        if not (shifted > 0).all():
            raise NotPositiveDefiniteError(
                f"B + delta I is not positive definite on the probes' Krylov spaces at delta = "
                f"{delta:g} (smallest Ritz value of B {self.ritz.min().item():.3e})")
        return shifted

    def _combine(self, per_column, norms, expected):
        """Estimate of a trace from per-column quadratic forms a (sketch rows first): the
        sketch rows summed, the probe rows averaged, with the control variate
        a - c (b - E b), b = the probe's squared norm (on the block), E b known exactly and c
        the regression slope of a on b over the probes. It takes out the variance that the
        probes' norms carry (with a sketch, ||P z||^2 varies; Rademacher probes without one
        have ||z||^2 = n exactly, and then c = 0). The error is the probes' alone."""
        r = self.sketch
        a, b = per_column[r:], norms[r:]
        s = a.shape[0]
        db = b - b.mean(0)
        var_b = db.square().sum(0)
        slope = torch.where(var_b > 1e-12 * b.mean(0).square() * s,
                            (db * (a - a.mean(0))).sum(0) / var_b.clamp_min(1e-300), 0.0)
        a = a - slope * (b - expected)
        value = per_column[:r].sum(0) + a.mean(0)
        err = a.std(0) / math.sqrt(s) if s > 1 else torch.full_like(value, math.inf)
        return value, err

    def _trace(self, fn, delta):
        value, err = self._combine(self.quadratic_forms(fn, delta), self.znorm2,
                                   float(self.n - self.sketch))
        return Estimate(value.item(), err.item())

    def quadratic_forms(self, fn, delta=0.0):
        """(r + s,) float64 ||z||^2 e1^T fn(T + delta I) e1 for every column."""
        return self.znorm2 * (self.weights * fn(self._shifted(delta))).sum(1)

    def logdet(self, delta=0.0):
        """Estimate(log det(B + delta I), standard error)."""
        return self._trace(torch.log, delta)

    def logdet_grad(self, delta=0.0):
        """Estimate of d/d delta log det(B + delta I) = tr (B + delta I)^{-1}."""
        return self._trace(torch.reciprocal, delta)

    def block_traces(self, delta=0.0):
        """(values (L,), stderrs (L,)) float64 estimates of tr(D_l (B + delta I)^{-1})."""
        if self.blocks is None:
            raise LanczosInputError("block_traces needs the blocks given at construction")
        inv = 1.0 / self._shifted(delta)
        per = self.znorm2.sqrt().unsqueeze(1) * (self._block_coeffs * inv.unsqueeze(1)).sum(2)
        return self._combine(per, self._block_norms, self._block_expected)

    def apply(self, fn, delta=0.0):
        """(s, n) ||z|| V fn(T + delta I) e1 for each probe (needs keep_basis=True, no
        sketch): fn(B + delta I) z, e.g. fn = torch.rsqrt for Gaussian samples at any prior
        precision delta from one run."""
        if self.basis is None or self.sketch:
            raise LanczosInputError("apply needs keep_basis=True and no sketch")
        y = torch.bmm(self._S, (self.first * fn(self._shifted(delta))).unsqueeze(2)).squeeze(2)
        coeffs = (y * self.znorm2.sqrt().unsqueeze(1)).to(self._dtype)
        return torch.bmm(coeffs.unsqueeze(1), self.basis).squeeze(1)


def _decoupled(alpha, beta, steps):
    """T with each probe's entries past its own steps cut off: beta there set to 0 and alpha to
    a copy of the last valid alpha, so the tail is a separate block whose eigenvectors have zero
    first component (weight 0) and whose eigenvalues are no further from the spectrum's range
    (a probe that broke down early stays exact)."""
    alpha, beta = alpha.double().clone(), beta.double().clone()
    m = alpha.shape[1]
    j = torch.arange(m, device=alpha.device)
    steps = steps.clamp_min(1)
    last = alpha.gather(1, (steps - 1).unsqueeze(1))
    alpha = torch.where(j < steps.unsqueeze(1), alpha, last)
    if m > 1:
        beta = torch.where(j[:-1] < (steps - 1).unsqueeze(1), beta, torch.zeros_like(beta))
    return alpha, beta
