"""Posterior predictives of a Laplace posterior at inputs x, from parameter samples.

"glm" (default): the linearized network f(x, theta_hat) + J(x) (theta_s - theta_hat), the
model the GGN posterior is the exact posterior of (Immer et al. 2021); the sampled networks
themselves ("nn") underfit badly for full-network GGN posteriors, because directions the
data barely determine get variance 1/delta and move the ReLU units. J(x) d is one
forward-mode product per sample (torch.func.jvp), vmapped over a chunk of samples: the
Jacobian (outputs x n per input) is never formed.

Links for classification: "probit" (default for glm) softmax(mu / sqrt(1 + pi/8 var)) per
class, mu = f(x, theta_hat) (the linear model's mean, known exactly) and var the per-class
variance of J d over the samples (about the known mean 0: S degrees of freedom, unbiased);
"mc" averages softmax (sigmoid for BCEWithLogitsLoss) over the samples' outputs.
"""

import math
from typing import NamedTuple

import torch
from torch.func import functional_call, jvp, vmap

from ..curvature.data import move_batch

PRED_TYPES = ("glm", "nn")
LINKS = ("probit", "mc")


class RegressionPredictive(NamedTuple):
    """Predictive of a regression model: mean and variance of the outputs over the parameter
    posterior (the model's epistemic part; add the observation noise yourself). For "glm" the
    mean is f(x, theta_hat) and the variance that of J(x) (theta_s - theta_hat)."""

    mean: torch.Tensor
    variance: torch.Tensor


def check_choices(pred_type, link_approx):
    """The link for this pred_type (None: the default), or a ValueError naming the choices."""
    if pred_type not in PRED_TYPES:
        raise ValueError(f"pred_type must be one of {PRED_TYPES}, got {pred_type!r}")
    if link_approx is None:
        return "probit" if pred_type == "glm" else "mc"
    if link_approx not in LINKS:
        raise ValueError(f"link_approx must be one of {LINKS}, got {link_approx!r}")
    if pred_type == "nn" and link_approx != "mc":
        raise ValueError("pred_type='nn' supports only link_approx='mc' (the sampled networks' "
                         "outputs have no Gaussian form for probit); use pred_type='glm'")
    return link_approx


def network_outputs(model, to_dict, samples, x, chunk):
    """(S, B, *out) outputs of the networks with the sampled parameters."""
    outs = []
    with torch.no_grad():
        for part in samples.split(chunk):
            outs.append(vmap(lambda t: functional_call(model, to_dict(t), (x,)))(part))
    return torch.cat(outs)


def linearized_outputs(model, to_dict, theta_hat, samples, x, chunk):
    """(f, JD): f = f(x, theta_hat) (B, *out) and JD (S, B, *out) = J(x) (theta_s - theta_hat),
    one jvp per sample, vmapped over chunks of samples (the primal is unbatched, so vmap runs
    it once per chunk, not once per sample)."""
    def f(theta):
        return functional_call(model, to_dict(theta), (x,))

    def push(d):
        return jvp(f, (theta_hat,), (d,))[1]

    with torch.no_grad():
        f0 = f(theta_hat)
        parts = [vmap(push)(part - theta_hat) for part in samples.split(chunk)]
    return f0, torch.cat(parts)


def probit(mean, variance, sigmoid=False):
    """The probit approximation of E[softmax(f)] for f ~ N(mean, diag(variance)) per class
    (sigmoid: the binary link), as in MacKay (1992) and laplace-torch's multi-class use."""
    scaled = mean / torch.sqrt(1.0 + (math.pi / 8.0) * variance)
    return scaled.sigmoid() if sigmoid else scaled.softmax(-1)


def predict(post, x, samples, pred_type, link_approx, chunk):
    """The predictive of LaplacePosterior `post` at x from given samples (S, n)."""
    link = check_choices(pred_type, link_approx)
    x = move_batch(x, x, post.theta_hat)[0]
    if samples.dim() != 2 or samples.shape[1] != post.n:
        raise ValueError(f"samples must have shape (S, {post.n}), got {tuple(samples.shape)}")
    samples = samples.to(post.theta_hat.device, post.theta_hat.dtype)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    if pred_type == "nn":
        out = network_outputs(post.model, post._to_dict, samples, x, chunk)
        if post.likelihood == "regression":
            return RegressionPredictive(out.mean(0), out.var(0, unbiased=False))
        return mc_link(out, post._sigmoid)
    f0, JD = linearized_outputs(post.model, post._to_dict, post.theta_hat, samples, x, chunk)
    variance = JD.square().mean(0)
    if post.likelihood == "regression":
        return RegressionPredictive(f0, variance)
    if link == "probit":
        return probit(f0, variance, post._sigmoid)
    return mc_link(f0 + JD, post._sigmoid)


def mc_link(out, sigmoid):
    return out.sigmoid().mean(0) if sigmoid else out.softmax(-1).mean(0)
