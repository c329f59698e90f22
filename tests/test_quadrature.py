"""Stochastic Lanczos quadrature (krylov/quadrature.py) against dense float64 references on
matrices with prescribed spectra: exact with a complete probe set, within its standard error
with random probes, every shift from one run (products counted), and clear errors."""

import math

import pytest
import torch
from conftest import spd_from_spectrum

from fastlanczos.errors import LanczosInputError, NotPositiveDefiniteError
from fastlanczos.krylov import ShiftedQuadrature, rademacher


class Counted:
    def __init__(self, B):
        self.B, self.calls = B, 0

    def __call__(self, V):
        self.calls += 1
        return V @ self.B


def dense_logdet(B, delta):
    sign, value = torch.linalg.slogdet(B + delta * torch.eye(B.shape[0], dtype=B.dtype))
    assert sign > 0
    return value.item()


@pytest.mark.parametrize("spectrum", [
    torch.logspace(-2, 3, 40),
    torch.tensor([0.0] * 30 + [1.0] * 5 + [50.0] * 5),  # 3 distinct values: early breakdown
])
def test_complete_probe_set_is_exact_at_every_shift(spectrum):
    """Probes sqrt(n) e_i (i = 1..n) with m = n: the quadrature is exact, so log det, the
    trace of the inverse and block traces match the dense values at every delta."""
    B, _ = spd_from_spectrum(spectrum, seed=3)
    n = B.shape[0]
    op = Counted(B)
    blocks = [(0, 7), (7, 25), (25, n)]
    q = ShiftedQuadrature(op, math.sqrt(n) * torch.eye(n, dtype=torch.float64), n,
                          blocks=blocks)
    used = op.calls
    for delta in (1e-3, 0.3, 7.0, 1e4):
        assert q.logdet(delta).value == pytest.approx(dense_logdet(B, delta), rel=1e-9, abs=1e-9)
        inv = torch.linalg.inv(B + delta * torch.eye(n, dtype=torch.float64))
        assert q.logdet_grad(delta).value == pytest.approx(inv.trace().item(), rel=1e-8)
        got, _ = q.block_traces(delta)
        want = torch.tensor([inv.diagonal()[a:b].sum().item() for a, b in blocks])
        torch.testing.assert_close(got, want.double(), rtol=1e-6, atol=1e-10)  # kappa up to 1e6
    assert op.calls == used  # changing delta made no product
    if (spectrum == 0).any():
        assert int(q.steps.min()) <= 3  # the breakdown path was taken (by some columns)
        with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
            q.logdet(0.0)  # B itself is singular


@pytest.mark.parametrize("sketch", [0, 32])
def test_random_probes_meet_one_percent_and_their_standard_error(sketch):
    """A GGN-like spectrum (decaying outliers over a null space) plus delta: Rademacher
    probes, one run, a scan over delta; within 4 standard errors, and with the sketch (the
    posterior's default) within 1e-2 relative (plain probes measured 2e-2 here)."""
    spectrum = torch.cat([torch.logspace(-3, 4, 80), torch.zeros(220)])
    B, _ = spd_from_spectrum(spectrum, seed=1)
    op = Counted(B)
    z = rademacher(32, 300, generator=torch.Generator().manual_seed(4))
    q = ShiftedQuadrature(op, z, 60, sketch=sketch, generator=torch.Generator().manual_seed(5))
    assert op.calls == q.products == 60 + (1 if sketch else 0)
    errors = []
    for delta in (0.1, 1.0, 10.0, 100.0):
        ref = dense_logdet(B, delta)
        est = q.logdet(delta)
        errors.append(abs(est.value - ref) / abs(ref))
        assert abs(est.value - ref) <= 4 * est.stderr + 1e-9 * abs(ref)
        tr = (1 / (spectrum + delta)).sum().item()
        grad = q.logdet_grad(delta)
        assert abs(grad.value - tr) <= 4 * grad.stderr + 1e-2 * tr
    assert max(errors) <= (1e-2 if sketch else 5e-2), errors
    assert op.calls == q.products


def test_sketch_lowers_the_standard_error():
    spectrum = torch.cat([torch.logspace(0, 4, 20), torch.zeros(180)])
    B, _ = spd_from_spectrum(spectrum, seed=2)
    z = rademacher(16, 200, generator=torch.Generator().manual_seed(0))
    plain = ShiftedQuadrature(lambda V: V @ B, z, 40).logdet(1.0)
    deflated = ShiftedQuadrature(lambda V: V @ B, z, 40, sketch=24,
                                 generator=torch.Generator().manual_seed(1)).logdet(1.0)
    assert deflated.stderr < 0.2 * plain.stderr
    assert deflated.value == pytest.approx(dense_logdet(B, 1.0), rel=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_apply_gives_shifted_functions_from_one_run(dtype):
    B, _ = spd_from_spectrum(torch.linspace(0.0, 20.0, 30), seed=5)
    z = torch.randn(3, 30, dtype=torch.float64)
    op = Counted(B.to(dtype))
    q = ShiftedQuadrature(op, z.to(dtype), 30, keep_basis=True)
    for delta in (0.5, 5.0):
        w, Q = torch.linalg.eigh(B + delta * torch.eye(30, dtype=torch.float64))
        want = z @ (Q * w.rsqrt()) @ Q.T
        got = q.apply(torch.rsqrt, delta)
        assert got.dtype == dtype
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    assert op.calls == 30


def test_bad_inputs():
    B = torch.eye(5, dtype=torch.float64)
    with pytest.raises(LanczosInputError, match="shape"):
        ShiftedQuadrature(lambda V: V, torch.ones(5, dtype=torch.float64), 3)
    with pytest.raises(LanczosInputError, match="m must be"):
        ShiftedQuadrature(lambda V: V, torch.ones(2, 5, dtype=torch.float64), 6)
    q = ShiftedQuadrature(lambda V: V @ B, rademacher(2, 5), 3)
    with pytest.raises(LanczosInputError, match="blocks"):
        q.block_traces(1.0)
    with pytest.raises(LanczosInputError, match="keep_basis"):
        q.apply(torch.rsqrt, 1.0)
    with pytest.raises(NotPositiveDefiniteError, match="delta = -2"):
        q.logdet(-2.0)
