"""Loss of orthogonality of the Lanczos basis, estimated by Simon's omega recurrence.

Simon (1984, "The Lanczos algorithm with partial reorthogonalization") showed that the overlaps
omega_{j,i} = v_j . v_i of the plain recurrence obey a recurrence of their own, driven by the
coefficients of T and rounding-sized noise:

  beta_j omega_{j+1,i} = beta_i omega_{j,i+1} + (alpha_i - alpha_j) omega_{j,i}
                         + beta_{i-1} omega_{j,i-1} - beta_{j-1} omega_{j-1,i}  (+ noise),

and that T stays exact to rounding (its Ritz values those of an orthonormal basis) as long as
every |omega| stays below sqrt(eps) (semi-orthogonality). So w is reorthogonalized only when
the estimate crosses sqrt(eps), at that step and the next (the next vector inherits the
overlaps of the current one otherwise), and the estimates are then reset to rounding level.
Larsen's PROPACK uses the same recurrence; its noise terms are eps-sized multiples of ||T||.

Everything is a (k, m + 1) float64 device tensor updated with masks: O(k j) work per step
and no host reads.
"""

import torch

# One Gram-Schmidt pass against a semi-orthogonal basis (overlaps <= sqrt(eps)) leaves
# overlaps of sqrt(eps) times the removed ones; above eps^(1/4) a second pass is run.
TWICE_EXPONENT = 0.25


class OmegaEstimate:
    """Per-column estimates of max_i |v_{j+1} . v_i|, deciding the Gram-Schmidt passes."""

    def __init__(self, k: int, m: int, dtype: torch.dtype, device):
        self.eps = torch.finfo(dtype).eps
        self.threshold = self.eps**0.5
        self.twice = self.eps**TWICE_EXPONENT
        f64 = dict(dtype=torch.float64, device=device)
        self.alpha = torch.zeros(k, m, **f64)
        self.beta = torch.zeros(k, m, **f64)
        self.prev = torch.zeros(k, m + 1, **f64)  # omega_{j-1, .}
        self.cur = torch.zeros(k, m + 1, **f64)   # omega_{j, .}
        self.cur[:, 0] = 1.0
        self.norm = torch.zeros(k, **f64)          # running ||T|| estimate (max row sum)
        self.forced = torch.zeros(k, dtype=torch.bool, device=device)
        self.count = torch.zeros(k, dtype=torch.int64, device=device)  # reorthogonalized steps
        self.worst = torch.zeros(k, **f64)         # the last estimate before any reset

    def passes(self, j: int, a: torch.Tensor, b: torch.Tensor, live: torch.Tensor):
        """Given step j's alpha_j, beta_j (float64 (k,), from the plain three-term update),
        estimate omega_{j+1, i} for i <= j and return the Gram-Schmidt passes (uint8 (k,):
        0, 1 or 2) for each column; live masks the columns still growing."""
        self.alpha[:, j], self.beta[:, j] = a, b
        prev_b = self.beta[:, j - 1] if j else torch.zeros_like(b)
        self.norm = torch.fmax(self.norm, a.abs() + b + prev_b)
        noise = self.eps * self.norm
        safe_b = torch.where(b > 0, b, torch.ones_like(b))
        new = torch.zeros_like(self.cur)
        if j >= 1:
            al, be, cur = self.alpha[:, :j], self.beta[:, :j], self.cur
            x = be * cur[:, 1 : j + 1] + (al - a.unsqueeze(1)) * cur[:, :j]
            x[:, 1:] += be[:, : j - 1] * cur[:, : j - 1]
            x -= prev_b.unsqueeze(1) * self.prev[:, :j]
            # the noise pushes away from zero, as rounding errors add up in the worst case
            x += torch.where(x >= 0, 1.0, -1.0) * noise.unsqueeze(1)
            new[:, :j] = x / safe_b.unsqueeze(1)
        new[:, j] = noise / safe_b
        self.worst = new[:, : j + 1].abs().amax(1)
        need = live & (b > 0) & ((self.worst > self.threshold) | self.forced)
        passes = need.to(torch.uint8) + (need & (self.worst > self.twice)).to(torch.uint8)
        # after Gram-Schmidt the overlaps are rounding-sized again
        new[:, : j + 1] = torch.where(need.unsqueeze(1), self.eps, new[:, : j + 1])
        new[:, j + 1] = 1.0
        self.forced = need & ~self.forced
        self.count += need
        self.prev, self.cur = self.cur, new
        return passes
