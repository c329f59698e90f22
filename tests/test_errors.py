"""Bad input gives a clear ValueError naming the problem: never a silent NaN, never a hang."""

import math

import pytest
import torch
from conftest import spd_from_spectrum

import fastlanczos as fl

N = 30


@pytest.fixture
def A():
    return spd_from_spectrum(torch.linspace(1, 2, N))[0]


def test_hvp_non_finite_output(A):
    calls = [0]

    def hvp(V):
        calls[0] += 1
        out = V @ A
        if calls[0] == 3:
            out[0, 5] = math.nan
        return out

    with pytest.raises(fl.NonFiniteError, match="NaN or inf at Lanczos step 2"):
        fl.inv_sqrt_apply(hvp, torch.randn(2, N, dtype=torch.float64), 10)
    calls[0] = 0
    with pytest.raises(fl.NonFiniteError, match="NaN or inf"):  # also in tolerance mode
        fl.inv_sqrt_apply(hvp, torch.randn(2, N, dtype=torch.float64), N, tol=1e-12)


def test_hvp_inf_output():
    with pytest.raises(ValueError, match="NaN or inf"):
        fl.inv_sqrt_apply(lambda V: V * math.inf, torch.randn(N, dtype=torch.float64), 5)


def test_non_finite_z(A):
    z = torch.randn(N, dtype=torch.float64)
    z[3] = math.nan
    with pytest.raises(ValueError, match="z contains NaN or inf"):
        fl.inv_sqrt_apply(A, z, 5)


@pytest.mark.parametrize("bad,msg", [
    (lambda V: V[..., :-1], "shape"),
    (lambda V: V.float(), "dtype"),
    (lambda V: V.numpy(), "torch.Tensor"),
])
def test_hvp_wrong_output(A, bad, msg):
    with pytest.raises(ValueError, match=msg):
        fl.inv_sqrt_apply(bad, torch.randn(2, N, dtype=torch.float64), 5)


def test_dense_operator_size_mismatch(A):
    with pytest.raises(ValueError, match="size 31 .* 30 x 30"):
        fl.inv_sqrt_apply(A, torch.randn(N + 1, dtype=torch.float64), 5)
    with pytest.raises(ValueError, match="square"):
        fl.inv_sqrt_apply(A[:, :-1], torch.randn(N, dtype=torch.float64), 5)
    with pytest.raises(ValueError, match="dtype mismatch"):
        fl.inv_sqrt_apply(A.float(), torch.randn(N, dtype=torch.float64), 5)


@pytest.mark.parametrize("m,msg", [(0, "m .* must be >= 1"), (-3, ">= 1"), (N + 1, "exceeds n"),
                                   (2.5, "must be an int")])
def test_bad_m(A, m, msg):
    with pytest.raises(ValueError, match=msg):
        fl.inv_sqrt_apply(A, torch.randn(N, dtype=torch.float64), m)


@pytest.mark.parametrize("kwargs,msg", [
    ({"tol": -1.0}, "tol"), ({"tol": math.nan}, "tol"), ({"shift": math.inf}, "shift"),
    ({"reorth": "sometimes"}, "reorth"), ({"check_every": 0}, "check_every"),
])
def test_bad_keywords(A, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        fl.inv_sqrt_apply(A, torch.randn(N, dtype=torch.float64), 5, **kwargs)


def test_bad_z(A):
    with pytest.raises(ValueError, match="float32 or float64"):
        fl.inv_sqrt_apply(A, torch.ones(N, dtype=torch.int64), 5)
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(k, n\)"):
        fl.inv_sqrt_apply(A, torch.ones(2, 2, N, dtype=torch.float64), 5)
    with pytest.raises(ValueError, match="unknown matrix function"):
        fl.funm_apply(A, torch.ones(N, dtype=torch.float64), "cbrt", 5)


@pytest.mark.parametrize("f", ["inv_sqrt", "inv", "log"])
@pytest.mark.parametrize("tol", [None, 1e-10])
def test_indefinite_operator_is_reported(f, tol):
    A, _ = spd_from_spectrum(torch.linspace(-0.5, 2.0, N), seed=2)
    with pytest.raises(fl.NotPositiveDefiniteError) as e:
        fl.funm_apply(A, torch.randn(2, N, dtype=torch.float64), f, 20, tol=tol)
    text = str(e.value)
    assert "not positive definite" in text and "smallest Ritz value -" in text
    assert "shift" in text and "damping" in text
    assert isinstance(e.value, ValueError)


def test_singular_psd_needs_shift_for_inv_sqrt_but_sqrt_is_fine():
    A, _ = spd_from_spectrum(torch.cat([torch.zeros(5), torch.linspace(1, 2, N - 5)]), seed=3)
    z = torch.randn(N, dtype=torch.float64)
    with pytest.raises(fl.NotPositiveDefiniteError):
        fl.inv_sqrt_apply(A, z, N)
    assert torch.isfinite(fl.funm_apply(A, z, "sqrt", N)).all()
    assert torch.isfinite(fl.inv_sqrt_apply(A, z, N, shift=1e-3)).all()


def test_exp_needs_no_definiteness():
    A, _ = spd_from_spectrum(torch.linspace(-1, 1, N), seed=4)
    assert torch.isfinite(fl.funm_apply(A, torch.randn(N, dtype=torch.float64), "exp", N)).all()


def test_tridiag_eigh_bad_shapes():
    with pytest.raises(ValueError, match=r"\(k, m-1\)"):
        ones = torch.ones(2, 5, dtype=torch.float64)
        fl.tridiag_eigh(ones, ones)
    with pytest.raises(ValueError, match="NaN or inf"):
        fl.tridiag_eigh(torch.tensor([1.0, math.nan]), torch.tensor([0.5]))
