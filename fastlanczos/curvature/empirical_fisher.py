"""Empirical Fisher products sum_i g_i g_i^T V and its diagonal, from per-example gradients."""

import torch
from torch.func import grad, vmap

from .problem import Problem


def per_example_gradients(prob, x, y):
    """G (B, n): gradient of each example's share of the summed loss, J_i^T dL/dF_i, by one
    vmapped reverse pass with the loss gradient in the outputs as cotangent."""
    F = prob.forward(prob.theta, x)
    r = grad(lambda G: prob.total(G, y))(F)

    def single(theta, xi, ri):
        return (prob.forward(theta, xi.unsqueeze(0))[0] * ri).sum()

    g = vmap(grad(single), in_dims=(None, 0, 0))(prob.theta, x, r)
    return prob.to_vec(g, lead=1)


def ef_vp(model, loss_fn, data, *, params=None, reduction=None, batch_size=None):
    """Empirical Fisher products sum_i g_i g_i^T V: per-example gradients G once per batch,
    then (V G^T) G for the whole block."""
    prob = Problem(model, loss_fn, data, params, reduction, batch_size)

    def block(V):
        out = torch.zeros_like(V)
        for x, y in prob.batches():
            G = per_example_gradients(prob, x, y)
            out.addmm_(V @ G.T, G)
        return out

    hvp = prob.wrap(block)
    hvp.psd = True  # a sum of g g^T, whatever the loss (read as in ggn_vp)
    return hvp


def ef_diagonal(model, loss_fn, data, *, params=None, reduction=None, batch_size=None):
    """The exact diagonal of the empirical Fisher, sum_i g_i**2."""
    prob = Problem(model, loss_fn, data, params, reduction, batch_size)
    with torch.no_grad():
        d = torch.zeros(prob.n, dtype=prob.ref.dtype, device=prob.ref.device)
        for x, y in prob.batches():
            d += per_example_gradients(prob, x, y).square().sum(0)
    return d
