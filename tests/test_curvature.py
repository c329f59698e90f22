"""Every curvature product against dense float64 references (tests/dense_curvature.py)."""

import pytest
import torch
from dense_curvature import batchnorm_net, dense_curvatures, mlp, small_cnn
from torch.utils.data import DataLoader, TensorDataset

from fastlanczos.curvature import (
    ef_diagonal,
    ef_vp,
    ggn_diagonal,
    ggn_vp,
    hessian_vp,
    hutchinson_diagonal,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]
MODELS = {"mlp": (mlp, (5,)), "cnn": (small_cnn, (1, 6, 6)), "batchnorm": (batchnorm_net, (5,))}


def problem(name, device="cpu", examples=10):
    torch.manual_seed(0)
    make, shape = MODELS[name]
    net = make().double().to(device)
    x = torch.randn(examples, *shape, dtype=torch.float64, device=device)
    y = torch.randint(0, 3, (examples,), device=device)
    return net, torch.nn.CrossEntropyLoss(), x, y


def loader(x, y, batch_size=4):  # 10 examples: batches of 4, 4, 2
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", list(MODELS))
def test_products_match_dense(model, device):
    net, lf, x, y = problem(model, device)
    ggn, hess, ef = dense_curvatures(net, lf, x, y)
    eye = torch.eye(ggn.shape[0], dtype=torch.float64, device=device)
    cases = [
        (ggn, ggn_vp(net, lf, (x, y), method="jacobian", batch_size=3)),
        (ggn, ggn_vp(net, lf, loader(x, y), method="jvp")),  # one jvp + vjp per vector
        (ggn, ggn_vp(net, lf, loader(x, y), cache=True)),
        (hess, hessian_vp(net, lf, loader(x, y))),
        (hess, hessian_vp(net, lf, (x, y), mode="rev-rev", batch_size=4)),
        (ef, ef_vp(net, lf, loader(x, y))),
    ]
    for dense, hvp in cases:
        torch.testing.assert_close(hvp(eye[:12]), dense[:12], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(hvp(eye[2]), dense[2], rtol=1e-10, atol=1e-12)


def test_cached_ggn_is_reused_and_equal():
    net, lf, x, y = problem("cnn")
    hvp = ggn_vp(net, lf, loader(x, y), cache=True)
    V = torch.randn(7, sum(p.numel() for p in net.parameters()), dtype=torch.float64)
    torch.testing.assert_close(hvp(V), hvp(V), rtol=0, atol=0)
    torch.testing.assert_close(hvp(V), ggn_vp(net, lf, (x, y), method="jvp")(V))


def test_diagonals_are_exact():
    net, lf, x, y = problem("batchnorm")
    ggn, hess, ef = dense_curvatures(net, lf, x, y)
    torch.testing.assert_close(ggn_diagonal(net, lf, loader(x, y)), ggn.diagonal())
    for cache in (False, True):
        torch.testing.assert_close(ggn_vp(net, lf, (x, y), cache=cache).diagonal(),
                                   ggn.diagonal())
    torch.testing.assert_close(ef_diagonal(net, lf, loader(x, y)), ef.diagonal())
    g = torch.Generator().manual_seed(0)
    est = hutchinson_diagonal(lambda V: V @ ggn, ggn.shape[0], num_probes=4000, generator=g,
                              dtype=torch.float64)
    assert (est - ggn.diagonal()).abs().max() < 0.1 * ggn.diagonal().abs().max()


@pytest.mark.parametrize("by", ["names", "tensors"])
def test_parameter_subset(by):
    net, lf, x, y = problem("mlp")
    last = ["2.weight", "2.bias"]
    ggn, hess, ef = dense_curvatures(net, lf, x, y, names=last)
    chosen = last if by == "names" else [net[2].weight, net[2].bias]
    eye = torch.eye(ggn.shape[0], dtype=torch.float64)
    for dense, build in [(ggn, ggn_vp), (hess, hessian_vp), (ef, ef_vp)]:
        torch.testing.assert_close(build(net, lf, (x, y), params=chosen)(eye), dense)


def test_sum_convention_regression():
    """A 'mean' loss is rescaled by its batch size: same matrix as the 'sum' loss."""
    torch.manual_seed(1)
    net = mlp(classes=2).double()
    x, y = torch.randn(9, 5, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    ggn, hess, _ = dense_curvatures(net, torch.nn.MSELoss(reduction="sum"), x, y,
                                    reduction="sum")
    eye = torch.eye(ggn.shape[0], dtype=torch.float64)
    for lf in [torch.nn.MSELoss(), torch.nn.MSELoss(reduction="sum")]:
        torch.testing.assert_close(ggn_vp(net, lf, loader(x, y))(eye), ggn / 2 if
                                   lf.reduction == "mean" else ggn)
        torch.testing.assert_close(hessian_vp(net, lf, (x, y))(eye), hess / 2 if
                                   lf.reduction == "mean" else hess)


def test_float32_block_matches_float64():
    net, lf, x, y = problem("cnn")
    V = torch.randn(5, sum(p.numel() for p in net.parameters()), dtype=torch.float64)
    want = ggn_vp(net, lf, (x, y))(V)
    got = ggn_vp(net.float(), lf, (x.float(), y))(V.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_bad_inputs():
    net, lf, x, y = problem("mlp")
    with pytest.raises(ValueError, match="shuffle"):
        ggn_vp(net, lf, DataLoader(TensorDataset(x, y), shuffle=True))
    with pytest.raises(ValueError, match="first"):
        ggn_vp(net, lf, (x, y[:5]))
    with pytest.raises(ValueError, match="pair"):
        ggn_vp(net, lf, [x])
    with pytest.raises(ValueError, match="not a parameter"):
        ggn_vp(net, lf, (x, y), params=["nope"])
    with pytest.raises(ValueError, match="no trainable"):
        ggn_vp(net.requires_grad_(False), lf, (x, y))
    net.requires_grad_(True)
    with pytest.raises(ValueError, match="shape"):
        ggn_vp(net, lf, (x, y))(torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="method"):
        ggn_vp(net, lf, (x, y), method="magic")
    with pytest.raises(ValueError, match="mode"):
        hessian_vp(net, lf, (x, y), mode="magic")


def test_scalar_output_regression():
    """Outputs of shape (B,) against targets (B,): the loss must see the model's own shape."""
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1),
                              torch.nn.Flatten(0)).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    lf = torch.nn.MSELoss(reduction="sum")
    ggn, hess, ef = dense_curvatures(net, lf, x, y, reduction="sum")
    eye = torch.eye(ggn.shape[0], dtype=torch.float64)
    torch.testing.assert_close(ggn_vp(net, lf, (x, y), method="jacobian")(eye), ggn)
    torch.testing.assert_close(ggn_vp(net, lf, (x, y), method="jvp")(eye[:3]), ggn[:3])
    torch.testing.assert_close(ef_vp(net, lf, (x, y))(eye), ef)
