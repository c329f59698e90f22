"""A stochastic diagonal for operators known only through products (the Hessian's)."""

import torch


def hutchinson_diagonal(hvp, n, *, num_probes=32, generator=None, dtype=torch.float32,
                        device="cpu"):
    """Unbiased estimate E[z * A z] of diag(A) with Rademacher probes, one block product."""
    z = torch.randint(0, 2, (num_probes, n), generator=generator, device=device).to(dtype)
    z = 2 * z - 1
    return (z * hvp(z)).mean(0)
