"""Gaussian samples x = A^{-1/2} z of a precision known through products, and the paper's
theta_mle + p^{-1/2} I^{-1/2} z.

Preconditioning: for any SPD P = R R^T, x = R^{-T} (R^{-1} A R^{-T})^{-1/2} z has covariance
R^{-T} (R^T A^{-1} R) R^{-1} = A^{-1} exactly, so it is the same distribution; but Lanczos on
the better-conditioned R^{-1} A R^{-T} converges in fewer products. With P = D diagonal,
R = D^{1/2} and x = D^{-1/2} (D^{-1/2} A D^{-1/2})^{-1/2} z.
"""

import math

import torch

from ..api import inv_sqrt_apply
from ..errors import NotPositiveDefiniteError

ADVICE = ("the precision matrix must be positive definite: use curvature='ggn' (always PSD), "
          "or a larger prior_precision")


def with_prior(hvp, prior):
    """V -> hvp(V) + prior * V, prior a scalar or a (n,) tensor broadcast over the rows."""
    return lambda V: hvp(V) + prior * V


def gaussian_sample(hvp, z, m, *, tol=None, diagonal=None, reorth="full"):
    """(x, info): x = A^{-1/2} z, or with a positive diagonal D of a preconditioner,
    x = D^{-1/2} (D^{-1/2} A D^{-1/2})^{-1/2} z. Both have covariance A^{-1}."""
    try:
        if diagonal is None:
            return inv_sqrt_apply(hvp, z, m, tol=tol, reorth=reorth, return_info=True)
        s = diagonal.to(z.dtype).rsqrt()
        y, info = inv_sqrt_apply(lambda V: s * hvp(s * V), z, m, tol=tol, reorth=reorth,
                                 return_info=True)
        return s * y, info
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
