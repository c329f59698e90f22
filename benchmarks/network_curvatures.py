"""Curvatures of networks other than the digits CNN's GGN + I, as dense float64 matrices.

The stopping rule was tuned on prescribed spectra and one network; these are operators it
was not tuned on (bench_stopping_sweep.py --networks): other architectures, losses, curvature
kinds and prior precisions, so other spectra. Their shapes differ from the prescribed ones:
a GGN has rank at most (examples x outputs), so the prior precision is a cluster of hundreds
of eigenvalues, with the network's eigenvalues decaying over many decades above it.
"""

import math

import torch
from torch import nn


def dense(vp, prior):
    """vp's matrix (products with the identity, 256 columns a block) + prior I, symmetrized;
    vp a curvature product of fastlanczos.curvature (it knows its num_params)."""
    n = vp.num_params
    eye = torch.eye(n, dtype=torch.float64)
    G = torch.cat([vp(eye[i:i + 256]) for i in range(0, n, 256)])
    return (G + G.T) / 2 + prior * eye


def sine_regression():
    """A 1-32-32-1 tanh MLP fit to 200 noisy points of sin(2x) by Adam on the summed squares."""
    torch.manual_seed(3)
    x = torch.linspace(-3, 3, 200, dtype=torch.float64).unsqueeze(1)
    y = torch.sin(2 * x) + 0.1 * torch.randn_like(x)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                        nn.Linear(32, 1)).double()
    return fit(net, lambda out, target: ((out - target) ** 2).sum(), x, y, steps=2000), (x, y)


def fit(net, loss_fn, x, y, steps=1500, lr=1e-2):
    """Adam on the summed loss (full batch; these nets have no dead ReLU units to slow it)."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    return net


def network_curvatures():
    """Yields (name, A): GGNs of a digits MLP (prior 0.1), multinomial logistic regression
    (0.01) and the CNN on 400 images (0.01); the CNN's empirical Fisher (1); a sine-regression
    MLP's GGN (1e-3, kappa 7.6e6) and Hessian (+ 1, positive definite at its minimum)."""
    from fastlanczos.curvature import ef_vp, ggn_vp, hessian_vp
    from fastlanczos.demo import digits_cnn, digits_split, train_map

    x, y = digits_split(dtype=torch.float64)["train"]
    ce = nn.CrossEntropyLoss()
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.Tanh(), nn.Linear(24, 10)).double()
    mlp = train_map(mlp, x, y, delta=0.1, epochs=40)
    yield "digits MLP GGN + 0.1", dense(ggn_vp(mlp, ce, (x, y), cache=True), 0.1)
    torch.manual_seed(2)
    lin = train_map(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).double(), x, y,
                    delta=1e-2, epochs=40)
    yield ("digits logistic GGN + 0.01",
           dense(ggn_vp(lin, ce, (x, y), cache=True), 1e-2))
    torch.manual_seed(0)
    few = (x[:400], y[:400])
    cnn = train_map(digits_cnn().double(), *few, delta=1.0, epochs=30)
    yield "digits CNN EF + 1 (400 images)", dense(ef_vp(cnn, ce, few), 1.0)
    yield ("digits CNN GGN + 0.01 (400 images)",
           dense(ggn_vp(cnn, ce, few, cache=True), 1e-2))
    net, data = sine_regression()
    mse = nn.MSELoss(reduction="sum")
    yield "sine MLP GGN + 1e-3", dense(ggn_vp(net, mse, data, cache=True), 1e-3)
    H = dense(hessian_vp(net, mse, data), 1.0)
    low = float(torch.linalg.eigvalsh(H)[0])
    if low <= 0:
        raise RuntimeError(f"the sine MLP's Hessian + I is not positive definite ({low:.2e})")
    yield "sine MLP Hessian + 1", H


class Elman(nn.Module):
    """A tanh RNN read out at its last state: h_t = tanh(W x_t + U h_{t-1} + b)."""

    def __init__(self, inputs, hidden, classes):
        super().__init__()
        self.inp, self.rec = nn.Linear(inputs, hidden), nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):  # x: (batch, time, inputs)
        h = torch.zeros(x.shape[0], self.rec.in_features, dtype=x.dtype, device=x.device)
        for t in range(x.shape[1]):
            h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
        return self.out(h)


def two_moons(n, g):
    """Two interleaved half circles with noise 0.15, labels 0 / 1."""
    t = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    label = torch.arange(n) % 2
    x = torch.stack([torch.cos(t), torch.sin(t)], 1)
    x = torch.where(label.unsqueeze(1) == 1, torch.stack([1 - x[:, 0], 0.5 - x[:, 1]], 1), x)
    return x + 0.15 * torch.randn(n, 2, generator=g, dtype=torch.float64), label


def sequence_task(n, g):
    """Sequences of 8 steps of 4 noisy features; the class is which of 3 features carries
    the largest sum over time (needs the recurrence to integrate)."""
    x = torch.randn(n, 8, 4, generator=g, dtype=torch.float64)
    return x, x[:, :, :3].sum(1).argmax(1)


def minimum(net, loss, prior, rounds=10, steps=500):
    """L-BFGS on loss() + prior / 2 ||theta||^2 to (near) its minimum."""
    params = list(net.parameters())
    opt = torch.optim.LBFGS(params, max_iter=steps, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        total = loss() + prior / 2 * sum((p ** 2).sum() for p in params)
        total.backward()
        return total

    for _ in range(rounds):
        opt.step(closure)
    return net


def unseen_network_curvatures():
    """Yields (name, A) for curvatures made after the rule was last changed and never used
    to choose it (bench_stopping_sweep.py --unseen-networks): a two-moons ReLU MLP's GGN
    (prior 1e-2), a tanh RNN's GGN on a sequence task (0.1), a Poisson regression MLP's GGN
    (log link, 1e-2), the digits CNN's GGN at a prior of 1e-4 (kappa 1.5e7) and a digits
    MLP's Hessian (+ 1, checked positive definite)."""
    from fastlanczos.curvature import ggn_vp
    from fastlanczos.demo import digits_cnn, digits_split, train_map

    g = torch.Generator().manual_seed(41)
    ce = nn.CrossEntropyLoss(reduction="sum")
    torch.manual_seed(41)
    x, y = two_moons(300, g)
    mlp = fit(nn.Sequential(nn.Linear(2, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                            nn.Linear(40, 2)).double(), ce, x, y)
    yield "two-moons ReLU MLP GGN + 1e-2", dense(ggn_vp(mlp, ce, (x, y), cache=True), 1e-2)
    xs, ys = sequence_task(300, g)
    rnn = fit(Elman(4, 24, 3).double(), ce, xs, ys)
    yield "tanh RNN GGN + 0.1", dense(ggn_vp(rnn, ce, (xs, ys), cache=True), 0.1)
    xp = torch.randn(400, 8, generator=g, dtype=torch.float64)
    counts = torch.poisson(torch.exp(0.5 * xp[:, :3].sum(1, keepdim=True)).clamp_max(50),
                           generator=g)
    poisson = nn.PoissonNLLLoss(log_input=True, full=False, reduction="sum")
    reg = fit(nn.Sequential(nn.Linear(8, 32), nn.Softplus(), nn.Linear(32, 32), nn.Softplus(),
                            nn.Linear(32, 1)).double(), poisson, xp, counts, lr=3e-3)
    yield ("Poisson MLP GGN + 1e-2",
           dense(ggn_vp(reg, poisson, (xp, counts), cache=True), 1e-2))
    xd, yd = digits_split(dtype=torch.float64)["train"]
    torch.manual_seed(5)
    few = (xd[:300], yd[:300])
    cnn = train_map(digits_cnn().double(), *few, delta=1e-4, epochs=30)
    yield ("digits CNN GGN + 1e-4 (300 images)",
           dense(ggn_vp(cnn, nn.CrossEntropyLoss(), few, cache=True), 1e-4))
    yield "digits MLP Hessian + 1", digits_mlp_hessian()


def digits_mlp_hessian():
    """A 64-16-10 tanh MLP's Hessian of the summed cross-entropy on the digits + I, at (near)
    its MAP by L-BFGS; checked positive definite (its loss Hessian alone is not)."""
    from fastlanczos.curvature import hessian_vp
    from fastlanczos.demo import digits_split

    xd, yd = digits_split(dtype=torch.float64)["train"]
    torch.manual_seed(6)
    small = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).double()
    sum_ce = nn.CrossEntropyLoss(reduction="sum")
    minimum(small, lambda: sum_ce(small(xd), yd), prior=1.0)
    H = dense(hessian_vp(small, sum_ce, (xd, yd)), 1.0)
    low = float(torch.linalg.eigvalsh(H)[0])
    if low <= 0:
        raise RuntimeError(f"the digits MLP's Hessian + I is not positive definite ({low:.2e})")
    return H
