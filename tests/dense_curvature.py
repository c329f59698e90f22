"""Small models and dense float64 curvature references from torch.func (jacrev), shared by
the curvature and Laplace tests. Every fast product is checked against these."""

import torch
from torch import nn
from torch.func import functional_call, jacrev


def mlp(inputs=5, classes=3):
    return nn.Sequential(nn.Linear(inputs, 6), nn.Tanh(), nn.Linear(6, classes))


def small_cnn(classes=3):
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, classes))


def batchnorm_net(inputs=5, classes=3):
    net = nn.Sequential(nn.Linear(inputs, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, classes))
    with torch.no_grad():  # non-trivial running statistics, so eval mode matters
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def dense_curvatures(model, loss_fn, x, y, names=None, reduction="mean"):
    """(GGN, Hessian, empirical Fisher) of sum_i l_i over the chosen parameters, dense."""
    named = dict(model.named_parameters())
    names = names or list(named)
    theta = torch.cat([named[k].detach().flatten() for k in names])
    shapes = [named[k].shape for k in names]

    def as_dict(vec):
        parts = torch.split(vec, [s.numel() for s in shapes])
        return {k: p.view(s) for k, p, s in zip(names, parts, shapes)}

    def outputs(vec, xs):
        return functional_call(model, as_dict(vec), (xs,))

    scale = (lambda b: b) if reduction == "mean" else (lambda b: 1)

    def total(F, ys):
        return loss_fn(F, ys) * scale(F.shape[0])

    # Hessians reverse-over-reverse: torch has no forward-mode rule for some losses'
    # backward (soft_margin_loss), which torch.func.hessian (forward-over-reverse) needs
    H = jacrev(jacrev(lambda v: total(outputs(v, x), y)))(theta)
    F = outputs(theta, x)
    J = jacrev(lambda v: outputs(v, x).reshape(-1))(theta)
    HL = jacrev(jacrev(lambda G: total(G.view_as(F), y)))(F.reshape(-1))
    ggn = J.T @ HL @ J
    G = torch.stack([jacrev(lambda v, i=i: total(outputs(v, x[i:i + 1]), y[i:i + 1]))(theta)
                     for i in range(x.shape[0])])
    return ggn, H, G.T @ G
