"""Gaussian samples x = R z (R R^T = A^{-1}) of a precision known through products, and the
paper's theta_mle + p^{-1/2} I^{-1/2} z.

Preconditioning (fastlanczos.inv_root_apply): for any SPD P with G = P^{-1/2},
x = G (G A G)^{-1/2} z has covariance G (G A G)^{-1} G = A^{-1} exactly, so it is the same
distribution; but Lanczos on the better-conditioned G A G converges in fewer products.
"""

import math

import torch

from ..api import inv_root_apply
from ..errors import NotPositiveDefiniteError

ADVICE = ("the precision matrix must be positive definite: use curvature='ggn' (always PSD), "
          "or a larger prior_precision")


def with_prior(hvp, prior):
    """V -> hvp(V) + prior * V, prior a scalar or a (n,) tensor broadcast over the rows."""
    return lambda V: hvp(V) + prior * V


def gaussian_sample(hvp, z, m, *, tol=None, precondition=None, reorth="full", progress=False,
                    memory_budget=None, eig_lower_bound=None):
    """(x, info): x = A^{-1/2} z, or with a preconditioner object (krylov.precondition;
    None: none) x = G (G A G)^{-1/2} z. Both have covariance A^{-1}. eig_lower_bound: b with
    A >= b I, or None (fastlanczos.inv_root_apply)."""
    try:
        return inv_root_apply(hvp, z, m, tol=tol, reorth=reorth, precondition=precondition,
                              progress=progress, memory_budget=memory_budget,
                              return_info=True, eig_lower_bound=eig_lower_bound)
    except NotPositiveDefiniteError as err:
        raise NotPositiveDefiniteError(f"{err}; {ADVICE}") from err


def sample_parameters(theta_mle, fisher_vp, num_data, num_samples, m, *, tol=None,
                      generator=None, reorth="full", return_info=False):
    """The paper's theta_mle + (1 / sqrt(p)) I(theta_mle)^{-1/2} z, z ~ N(0, I), p = num_data.

    theta_mle: (n,) tensor or a module (its trainable parameters, flattened); fisher_vp: the
    per-example Fisher information I as a product V -> I V for V of shape (k, n) (or a dense
    (n, n) tensor). Returns (num_samples, n) samples of N(theta_mle, I^{-1} / p).
    From this package's sum-convention products, the per-example Fisher of p examples is
    e.g. lambda V: ggn_vp(model, nn.CrossEntropyLoss(), data)(V) / p, and the samples are
    then those of LaplacePosterior(..., prior_precision=0)."""
    if isinstance(theta_mle, torch.nn.Module):
        theta_mle = torch.nn.utils.parameters_to_vector(
            [p for p in theta_mle.parameters() if p.requires_grad])
    theta_mle = theta_mle.detach()
    if theta_mle.dim() != 1:
        raise ValueError(f"theta_mle must be a vector, got shape {tuple(theta_mle.shape)}")
    if num_data <= 0:
        raise ValueError(f"num_data must be positive, got {num_data}")
    z = torch.randn(num_samples, theta_mle.numel(), generator=generator, dtype=theta_mle.dtype,
                    device=theta_mle.device)
    x, info = gaussian_sample(fisher_vp, z, m, tol=tol, reorth=reorth)
    samples = theta_mle + x / math.sqrt(num_data)
    return (samples, info) if return_info else samples
