"""The predictives: the linearized (glm) outputs against an explicit Jacobian, its variance
against the dense J A^{-1} J^T, probit against its closed form, mc, nn, and clear errors."""

import math

import pytest
import torch
from dense_curvature import dense_curvatures, mlp
from torch.func import functional_call, jacrev

from fastlanczos.laplace import LaplacePosterior, gaussian_sample
from fastlanczos.laplace.predictive import probit


def classifier(dtype=torch.float64, examples=12, loss=None):
    torch.manual_seed(0)
    net = mlp().to(dtype)
    x = torch.randn(examples, 5, dtype=dtype)
    y = torch.randint(0, 3, (examples,))
    return net, loss or torch.nn.CrossEntropyLoss(), x, y


def jacobian(post, x):
    """(f, J): outputs (B, C) and the dense Jacobian (B, C, n) at theta_hat, by jacrev."""
    def f(theta):
        return functional_call(post.model, post._to_dict(theta), (x,))
    return f(post.theta_hat), jacrev(f)(post.theta_hat)


def posterior_samples(post, generator_seed=1, count=5):
    g = torch.Generator().manual_seed(generator_seed)
    return post.theta_hat + 0.3 * torch.randn(count, post.n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mc_link_averages_softmax_of_linearized_outputs(dtype):
    net, lf, x, y = classifier(dtype)
    post = LaplacePosterior(net, lf, (x, y))
    samples = posterior_samples(post).to(dtype)
    f0, J = jacobian(post, x[:4])
    lin = f0 + torch.einsum("bcn,sn->sbc", J, samples - post.theta_hat)
    got = post.predictive(x[:4], samples=samples, link_approx="mc", chunk=2)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got, lin.softmax(-1).mean(0), **tol)
    assert got.dtype == dtype


def test_probit_is_the_closed_form_with_the_sample_variance():
    net, lf, x, y = classifier()
    post = LaplacePosterior(net, lf, (x, y))
    samples = posterior_samples(post, count=7)
    f0, J = jacobian(post, x)
    var = torch.einsum("bcn,sn->sbc", J, samples - post.theta_hat).square().mean(0)
    want = torch.softmax(f0 / torch.sqrt(1 + math.pi / 8 * var), -1)
    got = post.predictive(x, samples=samples)  # glm + probit are the defaults
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # and the closed form itself: a zero variance is the MAP softmax, a huge one is uniform
    torch.testing.assert_close(probit(f0, torch.zeros_like(f0)), f0.softmax(-1))
    flat = probit(f0, torch.full_like(f0, 1e12))
    torch.testing.assert_close(flat, torch.full_like(flat, 1 / 3), atol=1e-5, rtol=0)


def test_glm_variance_is_j_ainv_jt_with_identity_block_samples():
    """z = sqrt(n) I gives samples whose second moment is exactly A^{-1}, so the glm variance
    is exactly diag(J A^{-1} J^T) (the dense reference)."""
    net, lf, x, y = classifier()
    post = LaplacePosterior(net, lf, (x, y), prior_precision=0.7)
    A = dense_curvatures(net, lf, x, y)[0] + 0.7 * torch.eye(post.n, dtype=torch.float64)
    z = math.sqrt(post.n) * torch.eye(post.n, dtype=torch.float64)
    X, _ = gaussian_sample(post.precision_vp, z, post.n)
    xt = torch.randn(6, 5, dtype=torch.float64)
    f0, J = jacobian(post, xt)
    var = torch.einsum("bcn,nm,bcm->bc", J, torch.linalg.inv(A), J)
    got = post.predictive(xt, samples=post.theta_hat + X, link_approx="probit", chunk=16)
    torch.testing.assert_close(got, probit(f0, var), rtol=1e-8, atol=1e-10)


def test_regression_glm_mean_and_variance():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                              torch.nn.Linear(4, 2)).double()
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.randn(20, 2, dtype=torch.float64)
    post = LaplacePosterior(net, torch.nn.MSELoss(), (x, y))
    samples = posterior_samples(post, count=6)
    f0, J = jacobian(post, x[:5])
    JD = torch.einsum("bcn,sn->sbc", J, samples - post.theta_hat)
    mean, var = post.predictive(x[:5], samples=samples)
    torch.testing.assert_close(mean, f0)
    torch.testing.assert_close(var, JD.square().mean(0), rtol=1e-10, atol=1e-12)
    # nn: the sampled networks' own mean and variance, unchanged from before
    out = torch.stack([functional_call(net, post._to_dict(t), (x[:5],)) for t in samples])
    mean, var = post.predictive(x[:5], samples=samples, pred_type="nn")
    torch.testing.assert_close(mean, out.mean(0))
    torch.testing.assert_close(var, out.var(0, unbiased=False))


def test_binary_sigmoid_links():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (16, 1)).double()
    post = LaplacePosterior(net, torch.nn.BCEWithLogitsLoss(), (x, y))
    samples = posterior_samples(post, count=4)
    f0 = net(x).detach()
    JD = (samples - post.theta_hat)[:, :4] @ x.T  # the model is linear: J d = x w_d + b_d
    JD = (JD + (samples - post.theta_hat)[:, 4:5]).unsqueeze(-1)
    torch.testing.assert_close(post.predictive(x, samples=samples, link_approx="mc"),
                               (f0 + JD).sigmoid().mean(0))
    want = (f0 / torch.sqrt(1 + math.pi / 8 * JD.square().mean(0))).sigmoid()
    torch.testing.assert_close(post.predictive(x, samples=samples), want)


def test_drawn_samples_and_nn_default_link():
    net, lf, x, y = classifier(torch.float32)
    post = LaplacePosterior(net, lf, (x, y), prior_precision=5.0)
    for kind in ("glm", "nn"):
        probs = post.predictive(x[:3], num_samples=4, pred_type=kind, m=20)
        assert probs.shape == (3, 3) and probs.dtype == torch.float32
        torch.testing.assert_close(probs.sum(-1), torch.ones(3))


def test_bad_choices_are_clear_errors():
    net, lf, x, y = classifier()
    post = LaplacePosterior(net, lf, (x, y))
    samples = posterior_samples(post)
    with pytest.raises(ValueError, match="pred_type must be one of"):
        post.predictive(x, samples=samples, pred_type="laplace")
    with pytest.raises(ValueError, match="link_approx must be one of"):
        post.predictive(x, samples=samples, link_approx="bridge")
    with pytest.raises(ValueError, match="only link_approx='mc'"):
        post.predictive(x, samples=samples, pred_type="nn", link_approx="probit")
    with pytest.raises(ValueError, match="samples must have shape"):
        post.predictive(x, samples=samples[:, :5])
    with pytest.raises(ValueError, match="pred_type"):  # before any sampling work
        post.predictive(x, num_samples=2, pred_type="NN")
