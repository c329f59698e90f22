"""Exact Hessian products of the total loss (may be indefinite), the block vmapped."""

import warnings

import torch
from torch.func import grad, jvp, vjp, vmap

from .problem import Problem


def hessian_vp(model, loss_fn, data, *, params=None, reduction=None, batch_size=None,
               mode="fwd-rev"):
    """Exact Hessian products of the total loss, the block vmapped per data batch.

    mode "fwd-rev": jvp of the gradient (forward-over-reverse). mode "rev-rev": vjp of the
    gradient (double backward, as in the paper); the gradient's graph is built once per batch
    and pulled back for every vector of the block. torch cannot take forward-over-reverse of
    some losses (mse_loss with reduction="mean" in torch 2.x raises about immutable
    ZeroTensors); fwd-rev then falls back to rev-rev with a warning.
    """
    if mode not in ("fwd-rev", "rev-rev"):
        raise ValueError(f"mode must be 'fwd-rev' or 'rev-rev', got {mode!r}")
    prob = Problem(model, loss_fn, data, params, reduction, batch_size)
    modes = [mode]

    def batch_product(g, tangents):
        if modes[0] == "fwd-rev":
            try:
                return vmap(lambda t: jvp(g, (prob.theta,), (t,))[1])(tangents)
            except RuntimeError as err:
                if "ZeroTensor" not in str(err):
                    raise
                warnings.warn("forward-over-reverse failed for this loss; using rev-rev",
                              stacklevel=4)
                modes[0] = "rev-rev"
        _, pull = vjp(g, prob.theta)
        return vmap(lambda t: pull(t)[0])(tangents)

    def block(V):
        out = torch.zeros_like(V)
        tangents = prob.to_dict(V)
        for x, y in prob.batches():
            g = grad(lambda th: prob.total(prob.forward(th, x), y))
            out += prob.to_vec(batch_product(g, tangents), lead=1)
        return out

    return prob.wrap(block)
