"""Is the operator symmetric? One probe: |u^T A v - v^T A u| against rounding.

Lanczos assumes A = A^T; an asymmetric product (a shuffling data loader, dropout left on, a
bug in a hand-written hvp) shows up later as a non-positive Ritz value, non-finite numbers or
no convergence, whose messages would then blame the wrong thing. The probe costs one block
product (two calls for a single-vector layout, whose hvp takes one vector at a time).
"""

from typing import NamedTuple

import torch

from .lanczos import safe_norm

# Rounding of a dot product of n terms and of the product itself grows like sqrt(n) eps in
# practice; asymmetry that matters (a different data order, a transposed term) is orders of
# magnitude above this.
SYMMETRY_FACTOR = 100.0


class SymmetryProbe(NamedTuple):
    defect: float  # |u'Av - v'Au| / (||A u|| + ||A v||) for random unit u, v
    tolerance: float
    symmetric: bool


def probe_symmetry(matvec, z: torch.Tensor, single: bool, reducer=None) -> SymmetryProbe:
    """Probe matvec (rows of a (k, n) block, as in the recurrence) with two random unit
    vectors of z's dtype and device; a fixed seed, so the verdict is reproducible. reducer:
    z's rows are slices over ranks (krylov.sharded), so the dot products are all-reduced."""
    k, n = z.shape
    gen = torch.Generator(device=z.device).manual_seed(20260)
    U = torch.randn(max(k, 2), n, generator=gen, dtype=z.dtype, device=z.device)
    U = U / safe_norm(U, reducer).to(z.dtype).unsqueeze(1)
    if single or k < 2:
        AU = torch.cat([matvec(U[i:i + 1]) for i in range(2)])
    else:
        AU = matvec(U[:k])[:2]
    u, v = U[0].double(), U[1].double()
    Au, Av = AU[0].double(), AU[1].double()
    size = safe_norm(AU[:2], reducer).sum()  # >= ||A|| up to a factor 2 on these directions
    gap = (u @ Av) - (v @ Au)
    if reducer is not None:
        gap, n = reducer.sum_(gap.reshape(1))[0], reducer.n
    defect = float(gap.abs() / size) if size > 0 else 0.0
    tol = SYMMETRY_FACTOR * n**0.5 * torch.finfo(z.dtype).eps
    return SymmetryProbe(defect, tol, not defect > tol)  # NaN: cannot tell, say symmetric


def not_symmetric_message(probe: SymmetryProbe) -> str:
    return (f"the operator is not symmetric: for random unit vectors u, v, |u'Av - v'Au| = "
            f"{probe.defect:.2e} ||A||, far above rounding ({probe.tolerance:.1e}). Lanczos "
            "needs a symmetric operator; check that every product sees the same data in the "
            "same order (no shuffling loader, the model in eval mode) and that a hand-written "
            "hvp computes A v, not A^T v mixed with A v")
