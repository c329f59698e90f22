"""The Laplace log marginal likelihood and the prior it picks: exact for Bayesian linear
regression, close to the dense-GGN value and optimum on a small MLP (defaults: log det within
1e-2 relative, delta within 10%), no products when delta changes, and clear errors."""

import math

import pytest
import torch
from dense_curvature import dense_curvatures, mlp

from fastlanczos.laplace import LaplacePosterior


def trained_mlp(dtype=torch.float64, examples=40, delta=1.0, steps=300):
    torch.manual_seed(0)
    net = mlp().to(dtype)
    x = torch.randn(examples, 5, dtype=dtype)
    y = torch.randint(0, 3, (examples,))
    lf = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(steps):  # the MAP of the summed loss + delta / 2 ||theta||^2
        opt.zero_grad()
        penalty = sum(p.square().sum() for p in net.parameters())
        (lf(net(x), y) + 0.5 * delta * penalty / examples).backward()
        opt.step()
    return net, lf, x, y


def dense_marglik(post, ggn, loglik, prior):
    """The same formula with a dense log det (prior scalar or (n,))."""
    p = torch.as_tensor(prior, dtype=torch.float64).expand(post.n)
    theta = post.theta_hat.double()
    logdet = torch.linalg.slogdet(ggn + torch.diag(p))[1].item()
    return loglik - 0.5 * ((p * theta.square()).sum().item() - p.log().sum().item() + logdet)


class Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, V):
        self.calls += 1
        return self.fn(V)


@pytest.mark.parametrize("reduction, noise", [("sum", 0.5), ("mean", 1.0)])
def test_linear_gaussian_model_gives_the_exact_evidence(reduction, noise):
    """For a linear model with MSELoss at its exact MAP, Laplace is exact:
    log N(y | 0, sigma^2 I + X X^T / delta). In the sum convention sum (f - y)^2 is a
    Gaussian of variance 1/2; a "mean" loss over C = 2 outputs is sum (f - y)^2 / 2, variance 1."""
    torch.manual_seed(1)
    N, delta = 30, 2.5
    X = torch.randn(N, 3, dtype=torch.float64)
    Y = X @ torch.randn(3, 2, dtype=torch.float64) + 0.3 * torch.randn(N, 2, dtype=torch.float64)
    Xt = torch.cat([X, torch.ones(N, 1, dtype=torch.float64)], 1)
    W = torch.linalg.solve(Xt.T @ Xt / noise + delta * torch.eye(4, dtype=torch.float64),
                           Xt.T @ Y / noise)  # ridge MAP of sum (f - y)^2 / (2 noise) + ...
    net = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        net.weight.copy_(W[:3].T)
        net.bias.copy_(W[3])
    post = LaplacePosterior(net, torch.nn.MSELoss(reduction=reduction), (X, Y),
                            prior_precision=delta)
    cov = noise * torch.eye(N, dtype=torch.float64) + Xt @ Xt.T / delta
    dist = torch.distributions.MultivariateNormal(torch.zeros(N, dtype=torch.float64), cov)
    want = sum(dist.log_prob(Y[:, c]).item() for c in range(2))
    got = post.log_marginal_likelihood()
    assert got.value == pytest.approx(want, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_marglik_and_its_optimum_match_the_dense_ggn(dtype):
    net, lf, x, y = trained_mlp(dtype)
    post = LaplacePosterior(net, lf, (x, y), prior_precision=1.0)
    post.curvature_vp = counter = Counter(post.curvature_vp)
    ggn = dense_curvatures(net.double(), lf, x.double(), y)[0]
    net.to(dtype)
    loglik = -lf(net(x), y).item() * len(y)
    grid = torch.logspace(-3, 3, 1201, dtype=torch.float64).tolist()
    exact = [dense_marglik(post, ggn, loglik, d) for d in grid]
    best = grid[max(range(len(grid)), key=exact.__getitem__)]
    assert 1e-3 < best < 1e3  # an interior optimum, so the test can fail
    first = None
    for delta in (0.1, 1.0, best, 30.0):
        got = post.log_marginal_likelihood(delta)
        first = first if first is not None else counter.calls
        ref = dense_marglik(post, ggn, loglik, delta)
        logdet = torch.linalg.slogdet(ggn + delta * torch.eye(post.n, dtype=torch.float64))[1]
        # the log det's error, relative (value = ... - logdet / 2)
        assert 2 * abs(got.value - ref) <= 1e-2 * abs(logdet.item()) + 1e-3
        assert abs(got.value - ref) <= 5 * got.stderr + 1e-3 * abs(ref)
    assert counter.calls == first  # every delta after the first from the same probe run
    chosen = post.optimize_prior_precision()
    assert counter.calls == first
    info = chosen.optimize_info
    assert info.method == "marglik" and info.products == 0  # the probe run was cached
    assert abs(info.prior_precision - best) <= 0.1 * best
    assert float(chosen.prior_precision) == pytest.approx(info.prior_precision, rel=1e-6)
    assert info.seconds >= 0


def test_per_layer_prior_improves_the_dense_marglik():
    net, lf, x, y = trained_mlp()
    post = LaplacePosterior(net, lf, (x, y), prior_precision=1.0)
    ggn = dense_curvatures(net, lf, x, y)[0]
    loglik = -lf(net(x), y).item() * len(y)
    scalar = post.optimize_prior_precision()
    layered = post.optimize_prior_precision(per_layer=True)
    prior = layered.optimize_info.prior_precision
    assert prior.shape == (post.n,) and len(prior.unique()) == 4  # one per parameter tensor
    assert layered.optimize_info.products > 0
    s = dense_marglik(post, ggn, loglik, scalar.optimize_info.prior_precision)
    v = dense_marglik(post, ggn, loglik, prior)
    assert v > s  # the extra freedom is used
    assert layered.optimize_info.objective == pytest.approx(v, abs=0.05)


def test_gridsearch_picks_the_best_validation_nll_from_one_run():
    net, lf, x, y = trained_mlp()
    torch.manual_seed(3)
    xv, yv = torch.randn(25, 5, dtype=torch.float64), torch.randint(0, 3, (25,))
    post = LaplacePosterior(net, lf, (x, y), prior_precision=1.0)
    post.curvature_vp = counter = Counter(post.curvature_vp)
    grid = [0.1, 1.0, 10.0, 100.0]
    chosen = post.optimize_prior_precision("gridsearch", val=(xv, yv), grid=grid,
                                           num_samples=8, steps=post.n, seed=4)
    info = chosen.optimize_info
    assert counter.calls == info.products == post.n  # one run for the whole grid
    ggn = dense_curvatures(net, lf, x, y)[0]
    z = torch.randn(8, post.n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for delta, loss in info.grid:  # each grid point against dense (B + delta I)^{-1/2} z
        w, Q = torch.linalg.eigh(ggn + delta * torch.eye(post.n, dtype=torch.float64))
        samples = post.theta_hat + z @ (Q * w.rsqrt()) @ Q.T
        probs = post.predictive(xv, samples=samples)
        ref = -probs.gather(1, yv[:, None]).log().mean().item()
        assert loss == pytest.approx(ref, rel=1e-6)
    assert info.prior_precision == min(info.grid, key=lambda t: t[1])[0]
    assert float(chosen.prior_precision) == info.prior_precision


def test_bad_inputs_are_clear_errors():
    net, lf, x, y = trained_mlp(steps=1)
    post = LaplacePosterior(net, lf, (x, y))
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="positive"):
            post.log_marginal_likelihood(bad)
    with pytest.raises(ValueError, match="shape"):
        post.log_marginal_likelihood(torch.ones(3))
    with pytest.raises(ValueError, match="method must be one of"):
        post.optimize_prior_precision("cv")
    with pytest.raises(ValueError, match="val="):
        post.optimize_prior_precision("gridsearch")
    with pytest.raises(ValueError, match="positive"):
        post.optimize_prior_precision("gridsearch", val=(x, y), grid=[1.0, -1.0])
    with pytest.raises(ValueError, match="bounds"):
        post.optimize_prior_precision(bounds=(0.0, 1.0))
    assert math.isfinite(post.log_marginal_likelihood().value)
