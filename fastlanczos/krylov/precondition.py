"""Exact preconditioned sampling: x = G (G A G)^{-1/2} z with G = P^{-1/2} symmetric.

For any SPD P, R = G (G A G)^{-1/2} has R R^T = G (G A G)^{-1} G = A^{-1}: the same
distribution as A^{-1/2} z (a different draw), while Lanczos runs on G A G, whose spectrum a
good P compresses. Two preconditioners, each applied in O(n) or O(n r) per row:

- Diagonal(d): P = diag(d).
- LowRank(U, lam, mu): P = U^T diag(lam) U + mu (I - U^T U) (U: (r, n) orthonormal rows), so
  G V = mu^{-1/2} V + ((V U^T) * (lam^{-1/2} - mu^{-1/2})) U. For curvature + delta I with the
  sketch's top eigenpairs, the outliers map near 1 and the rest keep their spread over mu.

lower_bound(b): given A >= b I, a lower bound of G A G's spectrum for the Gauss-Radau stop
(krylov/radau.py), or None. A Nystrom sketch has one: it sketches a PSD B with A = B + s I (s
its shift), and its B^ = U^T diag(lam - s) U <= B (Nystrom approximations lie below the
operator), so P <= B^ + t I <= A + (t - s) I with t = max(s, mu), and G A G >= b' / (b' + t -
s), b' = max(b, s): 1 for a scalar prior (mu = s), where the sketch maps the prior's cluster.
Rounding moves B^ above B: measured on a float32 CNN GGN (priors 1e-3..1, ranks 32-256),
lambda_min(G A G) fell to 1 - (0.02-0.11) r eps ||P|| / mu (0.63 at prior 1e-3, rank 256),
so the bound is taken SKETCH_MARGIN + ROUNDING_SHARE r eps ||P|| / mu lower (in float64 the
term is ~1e-10), and none is given where that term exceeds ROUNDING_LIMIT. Measured on the
demo's CNN GGN in float32 (32 samples, tol 1e-2 / 1e-3, priors 1.29 and 0.1, ranks 64-256):
bounds lowered by 1-25% still took 2-32% fewer steps than the rule, never above tol; at prior
0.01 (||P|| / mu = 1.6e5) the unlowered bound 0.999 stopped at 1.08x and 3.9x tol (rank 256,
where lambda_min(G A G) was 0.86), and the guard gives none there. inv_root_apply does not
hold a derived bound to account: it is clamped below the Ritz values, and a column whose Ritz
values fall below it goes back to the rule (krylov/stopping.py). Other
preconditioners give None: G A G >= b G^2 >= b / ||P|| always holds, but so far below G A G's
spectrum (the diagonal one: 1e-4 for 0.07 on a small GGN) that the estimate it gives stops
later than the rule (a bound 2x low already does; README).
"""

import torch

SKETCH_MARGIN, ROUNDING_SHARE, ROUNDING_LIMIT = 1e-3, 0.5, 0.25


class Diagonal:
    """P = diag(d), d > 0 of shape (n,)."""

    def __init__(self, d):
        self.d = d
        self._root = d.rsqrt()
        self.rank, self.products = 0, 0

    def root(self, V):  # G V for rows V (k, n)
        return V * self._root.to(V.dtype)

    def lower_bound(self, b):
        return None  # b / max(d) holds, but too loosely to use (module doc)


class LowRank:
    """P = U^T diag(lam) U + mu (I - U^T U); lam (r,) and mu > 0, float64."""

    def __init__(self, u, lam, mu, products=0, sketch_shift=None):
        """sketch_shift: s where U, lam come from a Nystrom sketch of a PSD B, lam - s being
        B^'s eigenvalues, and P is used for B + s I (module doc); None otherwise."""
        positive, top = torch.stack([(lam > 0).all().double(), lam.double().amax()]).tolist() \
            if lam.numel() else (1.0, 0.0)  # one read (one host sync on a GPU) for both
        if not mu > 0 or not positive:
            raise ValueError("a low-rank preconditioner needs lam > 0 and mu > 0")
        self.u, self.lam, self.mu = u, lam, float(mu)
        self.top = max(top, self.mu)  # ||P||
        self.sketch_shift = sketch_shift
        self._gap = (lam.rsqrt() - self.mu ** -0.5).to(u.dtype)
        self.rank, self.products = u.shape[0], products

    def root(self, V):
        return V * self.mu ** -0.5 + ((V @ self.u.T) * self._gap) @ self.u

    def lower_bound(self, b):
        if self.sketch_shift is None:
            return None  # made by hand: only b / ||P||, too loose (module doc)
        s = self.sketch_shift
        floor = max(b, s)
        rounding = ROUNDING_SHARE * self.rank * torch.finfo(self.u.dtype).eps * self.top / self.mu
        if rounding > ROUNDING_LIMIT:  # a bound that loose stops later than the rule
            return None
        return (1 - SKETCH_MARGIN - rounding) * floor / (floor + max(s, self.mu) - s)


def preconditioned(matvec, pre):
    """V -> G A G V: the operator Lanczos runs on."""
    return lambda V: pre.root(matvec(pre.root(V)))
