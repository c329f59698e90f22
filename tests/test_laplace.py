"""Laplace sampling: covariance exactly A^{-1} (identity-block trick: with Z = I the rows of
X are A^{-1/2} e_i, so X^T X = A^{-1}), the paper's formula, the predictive, clear errors."""

import math

import pytest
import torch
from dense_curvature import dense_curvatures, mlp
from torch.utils.data import DataLoader, TensorDataset

from fastlanczos.curvature import ggn_vp
from fastlanczos.errors import NotPositiveDefiniteError
from fastlanczos.laplace import LaplacePosterior, gaussian_sample, sample_parameters

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


def classifier(device="cpu", dtype=torch.float64, examples=10):
    torch.manual_seed(0)
    net = mlp().to(device, dtype)
    x = torch.randn(examples, 5, dtype=dtype, device=device)
    y = torch.randint(0, 3, (examples,), device=device)
    return net, torch.nn.CrossEntropyLoss(), x, y


def linear_regression(examples=40):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()
    x = torch.randn(examples, 3, dtype=torch.float64)
    return net, torch.nn.MSELoss(), x, x @ torch.randn(3, 2, dtype=torch.float64)


def identity_covariance(precision_vp, n, like, post=None, precondition=None):
    eye = torch.eye(n, dtype=like.dtype, device=like.device)
    pre = None if post is None else post._preconditioner(precondition, eye, None)
    X, info = gaussian_sample(precision_vp, eye, n, precondition=pre)
    return X.T @ X


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precondition", [None, "diag", "nystrom"])
def test_samples_have_covariance_inverse_precision(device, precondition):
    net, lf, x, y = classifier(device)
    post = LaplacePosterior(net, lf, DataLoader(TensorDataset(x, y), batch_size=4),
                            prior_precision=0.5)
    ggn = dense_curvatures(net, lf, x, y)[0]
    A = ggn + 0.5 * torch.eye(post.n, dtype=ggn.dtype, device=device)
    torch.testing.assert_close(post.diagonal(), A.diagonal())
    cov = identity_covariance(post.precision_vp, post.n, post.theta_hat, post, precondition)
    torch.testing.assert_close(cov, torch.linalg.inv(A), rtol=0, atol=1e-8)


def test_per_parameter_prior_and_zero_prior_mle():
    net, lf, x, y = linear_regression()
    ggn = dense_curvatures(net, lf, x, y)[0]
    for prior in [0.0, torch.linspace(0.1, 1.0, 8, dtype=torch.float64)]:
        post = LaplacePosterior(net, lf, (x, y), prior_precision=prior)
        A = ggn + torch.diag(torch.as_tensor(prior, dtype=torch.float64).expand(8))
        cov = identity_covariance(post.precision_vp, post.n, post.theta_hat)
        torch.testing.assert_close(cov, torch.linalg.inv(A), rtol=0, atol=1e-8)


def test_sample_is_theta_hat_plus_inverse_root():
    net, lf, x, y = classifier()
    post = LaplacePosterior(net, lf, (x, y), prior_precision=2.0)
    samples, info = post.sample(3, m=post.n, tol=None, precondition=None, return_info=True,
                                generator=torch.Generator().manual_seed(3))
    z = torch.randn(3, post.n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    w, Q = torch.linalg.eigh(dense_curvatures(net, lf, x, y)[0] + 2.0 * torch.eye(post.n))
    want = post.theta_hat + z @ (Q * w.rsqrt()) @ Q.T
    torch.testing.assert_close(samples, want, rtol=0, atol=1e-8)
    assert info.products <= post.n


def test_sample_parameters_is_the_papers_formula():
    torch.manual_seed(0)
    n, p = 12, 50
    B = torch.randn(n, n, dtype=torch.float64)
    fisher = B @ B.T / n + 0.1 * torch.eye(n, dtype=torch.float64)
    theta = torch.randn(n, dtype=torch.float64)
    got = sample_parameters(theta, lambda V: V @ fisher, p, 4, m=n,
                            generator=torch.Generator().manual_seed(1))
    z = torch.randn(4, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w, Q = torch.linalg.eigh(fisher)
    want = theta + (z @ (Q * w.rsqrt()) @ Q.T) / math.sqrt(p)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_sample_parameters_with_model_fisher_is_mle_laplace():
    net, lf, x, y = linear_regression()
    hvp = ggn_vp(net, lf, (x, y))
    got = sample_parameters(net, lambda V: hvp(V) / len(y), len(y), 3, m=8,
                            generator=torch.Generator().manual_seed(5))
    post = LaplacePosterior(net, lf, (x, y), prior_precision=0.0)
    want = post.sample(3, m=8, tol=None, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_predictive(dtype):
    net, lf, x, y = classifier(dtype=dtype)
    post = LaplacePosterior(net, lf, (x, y))
    probs = post.predictive(x[:4], num_samples=6)
    assert probs.shape == (4, 3) and probs.dtype == dtype
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, dtype=dtype))
    net, lf, x, y = linear_regression()
    mean, var = LaplacePosterior(net, lf, (x, y)).predictive(x[:5], num_samples=6)
    assert mean.shape == var.shape == (5, 2) and (var >= 0).all()


def test_negative_curvature_gives_clear_error():
    net, lf, x, y = classifier()
    assert torch.linalg.eigvalsh(dense_curvatures(net, lf, x, y)[1]).min() < -1e-3
    post = LaplacePosterior(net, lf, (x, y), curvature="hessian", prior_precision=0.0)
    with pytest.raises(NotPositiveDefiniteError, match="curvature='ggn'"):
        post.sample(2, m=post.n, tol=None, precondition=None)


def test_bad_inputs():
    net, lf, x, y = classifier()
    with pytest.raises(ValueError, match="prior_precision"):
        LaplacePosterior(net, lf, (x, y), prior_precision=-1.0)
    with pytest.raises(ValueError, match="prior_precision"):
        LaplacePosterior(net, lf, (x, y), prior_precision=torch.ones(3))
    with pytest.raises(ValueError, match="first"):
        LaplacePosterior(net, lf, (x, y[:4]))
    with pytest.raises(ValueError, match="first data batch"):
        LaplacePosterior(net, lf, (x[:, :4], y))
    with pytest.raises(ValueError, match="curvature"):
        LaplacePosterior(net, lf, (x, y), curvature="kfac")
    with pytest.raises(ValueError, match="likelihood"):
        LaplacePosterior(net, lambda F, t: F.sum(), (x, y))
    with pytest.raises(ValueError, match="no trainable"):
        LaplacePosterior(mlp().requires_grad_(False), lf, (x.float(), y))
    with pytest.raises(ValueError, match="precondition"):
        LaplacePosterior(net, lf, (x, y)).sample(2, precondition=-torch.ones(57))


@pytest.mark.parametrize("precondition,prior", [(None, 0.5), ("nystrom", 0.5),
                                                ("nystrom", "per-parameter"), ("diag", 0.5)])
def test_tolerance_samples_use_the_prior_as_spectrum_floor(precondition, prior):
    """A = GGN + prior >= min(prior) I: sample(tol=...) stops on the Gauss-Radau estimate
    with that bound (carried through the preconditioner as lower_bound); every draw is within
    tol of its own exact value (the same z, the same P) and no bound error is raised."""
    net, lf, x, y = classifier(examples=30)
    n = sum(p.numel() for p in net.parameters())
    if prior == "per-parameter":
        prior = torch.linspace(0.2, 2.0, n, dtype=torch.float64)
    post = LaplacePosterior(net, lf, (x, y), prior_precision=prior)
    assert post.spectrum_floor() == pytest.approx(float(torch.as_tensor(prior).min()))
    A = dense_curvatures(net, lf, x, y)[0] + torch.diag(torch.as_tensor(prior).expand(n))
    tol = 1e-7
    samples, info = post.sample(5, m=n, tol=tol, precondition=precondition, return_info=True,
                                generator=torch.Generator().manual_seed(4))
    z = torch.randn(5, n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    pre = post._preconditioner(precondition, z, tol)
    G = torch.eye(n, dtype=torch.float64) if pre is None or not hasattr(pre, "root") \
        else pre.root(torch.eye(n, dtype=torch.float64))
    w, Q = torch.linalg.eigh(G @ A @ G)
    exact = (G @ Q @ (w.rsqrt().unsqueeze(1) * (Q.T @ z.T))).T
    assert bool(info.converged.all())
    err = (samples - post.theta_hat - exact).norm(dim=1) / exact.norm(dim=1)
    assert float(err.max()) <= 10 * tol  # tol is on G^-1 x (inv_root_apply): ||G|| ~ 1-10


def test_the_hessian_has_no_spectrum_floor():
    net, lf, x, y = classifier()
    post = LaplacePosterior(net, lf, (x, y), curvature="hessian", prior_precision=5.0)
    assert post.spectrum_floor() is None
    assert LaplacePosterior(net, lf, (x, y), prior_precision=0.0).spectrum_floor() is None
