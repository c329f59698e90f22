"""Curvatures of networks other than the digits CNN's GGN + I, as dense float64 matrices.

The stopping rule was tuned on prescribed spectra and one network; these are operators it
was not tuned on (bench_stopping_sweep.py --networks): other architectures, losses, curvature
kinds and prior precisions, so other spectra. Their shapes differ from the prescribed ones:
a GGN has rank at most (examples x outputs), so the prior precision is a cluster of hundreds
of eigenvalues, with the network's eigenvalues decaying over many decades above it.
"""

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
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2000):
        opt.zero_grad()
        ((net(x) - y) ** 2).sum().backward()
        opt.step()
    return net, (x, y)


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
