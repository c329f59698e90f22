"""Exact preconditioned sampling: x = G (G A G)^{-1/2} z with G = P^{-1/2} symmetric.

For any SPD P, R = G (G A G)^{-1/2} has R R^T = G (G A G)^{-1} G = A^{-1}: the same
distribution as A^{-1/2} z (a different draw), while Lanczos runs on G A G, whose spectrum a
good P compresses. Two preconditioners, each applied in O(n) or O(n r) per row:

- Diagonal(d): P = diag(d).
- LowRank(U, lam, mu): P = U^T diag(lam) U + mu (I - U^T U) (U: (r, n) orthonormal rows), so
  G V = mu^{-1/2} V + ((V U^T) * (lam^{-1/2} - mu^{-1/2})) U. For curvature + delta I with the
  sketch's top eigenpairs, the outliers map near 1 and the rest keep their spread over mu.
"""



class Diagonal:
    """P = diag(d), d > 0 of shape (n,)."""

    def __init__(self, d):
        self.d = d
        self._root = d.rsqrt()
        self.rank, self.products = 0, 0

    def root(self, V):  # G V for rows V (k, n)
        return V * self._root.to(V.dtype)


class LowRank:
    """P = U^T diag(lam) U + mu (I - U^T U); lam (r,) and mu > 0, float64."""

    def __init__(self, u, lam, mu, products=0):
        if not mu > 0 or not bool((lam > 0).all()):
            raise ValueError("a low-rank preconditioner needs lam > 0 and mu > 0")
        self.u, self.lam, self.mu = u, lam, float(mu)
        self._gap = (lam.rsqrt() - self.mu ** -0.5).to(u.dtype)
        self.rank, self.products = u.shape[0], products

    def root(self, V):
        return V * self.mu ** -0.5 + ((V @ self.u.T) * self._gap) @ self.u


def preconditioned(matvec, pre):
    """V -> G A G V: the operator Lanczos runs on."""
    return lambda V: pre.root(matvec(pre.root(V)))
