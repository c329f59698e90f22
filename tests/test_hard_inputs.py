"""Hard inputs through the main API: graded spectra, extreme scales, asymmetric operators,
the silent-wrong-answer cases, and the tridiagonal solver's LAPACK fallback."""

import math

import numpy as np
import pytest
import torch
from conftest import dense_funm, rel_err, spd_from_spectrum

import fastlanczos as fl
from fastlanczos.krylov import tridiag as tridiag_module

GRADED = {
    "10^-(i/3), n = 48": 10.0 ** (-torch.arange(48, dtype=torch.float64) / 3),
    "geomspace(1, 1e-16, 64)": torch.logspace(0, -16, 64, dtype=torch.float64),
}
EXACT = {"sqrt": torch.sqrt, "exp": torch.exp}


@pytest.mark.parametrize("backend", ["default", "torch"])
@pytest.mark.parametrize("f", sorted(EXACT))
@pytest.mark.parametrize("spectrum", sorted(GRADED))
def test_graded_spectra_at_full_size(spectrum, f, backend, monkeypatch):
    """m = n on valid operators whose eigenvalues span 16 decades (the compiled QL used to
    stop here with 'did not converge')."""
    if backend == "torch":
        monkeypatch.setenv("FASTLANCZOS_BACKEND", "torch")
    A, Q = spd_from_spectrum(GRADED[spectrum], seed=5)
    n = A.shape[0]
    z = torch.randn(2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = fl.funm_apply(A, z, f, n)
    ref = dense_funm(A, z, EXACT[f])
    # sqrt is not Lipschitz at 0: eigenvalue errors of eps ||A|| move it by sqrt(eps)
    assert rel_err(x, ref) <= (30 * math.sqrt(n * 2.2e-16) if f == "sqrt" else 1e-12)


@pytest.mark.parametrize("reorth", ["full", "none"])
@pytest.mark.parametrize("scale", [1e300, 1e200, 1e-200, 1e-300, 2.0**1000, 2.0**-1000])
def test_extreme_operator_scales(scale, reorth):
    """Products finite but their squares not: norms must not overflow or underflow, and
    the answer scales exactly as A^{-1/2} does."""
    A, _ = spd_from_spectrum(torch.linspace(1, 10, 40), seed=6)
    z = torch.randn(3, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = fl.inv_sqrt_apply(A, z, 40, reorth=reorth)
    x, info = fl.inv_sqrt_apply(A * scale, z, 40, reorth=reorth, return_info=True)
    assert rel_err(x * math.sqrt(scale), ref) < 1e-12
    assert not info.breakdown.any() or bool((info.steps == 40).all())


def test_lanczos_relation_holds_at_huge_scale():
    A, _ = spd_from_spectrum(torch.linspace(1, 2, 30), seed=7)
    z = torch.randn(30, dtype=torch.float64)
    small, big = fl.lanczos(A, z, 8), fl.lanczos(A * 1e300, z, 8)
    torch.testing.assert_close(big.alpha / 1e300, small.alpha, rtol=1e-12, atol=0)
    torch.testing.assert_close(big.beta / 1e300, small.beta, rtol=1e-10, atol=0)
    torch.testing.assert_close(big.basis, small.basis, rtol=0, atol=1e-12)
    torch.testing.assert_close(big.residual / 1e300, small.residual, rtol=0, atol=1e-12)


def test_overflowing_products_are_still_reported():
    with pytest.raises(fl.NonFiniteError, match="returned NaN or inf at Lanczos step 0"):
        fl.inv_sqrt_apply(lambda V: V * 1e300 * 1e300, torch.randn(5, dtype=torch.float64), 3)


# ---------------------------------------------------------------- silent wrong answers


def test_complex_tridiagonal_is_refused():
    with pytest.raises(ValueError, match="must be real"):
        fl.tridiag_eigh(torch.tensor([1.0 + 1j, 2.0]), torch.tensor([0.5 + 0j]))
    with pytest.raises(ValueError, match="beta must be real"):
        fl.tridiag_eigh(torch.tensor([1.0, 2.0]), torch.tensor([0.5 + 1j]))


@pytest.mark.parametrize("tol", [None, 1e-8])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_callable_f_returning_non_finite(bad, tol):
    A, _ = spd_from_spectrum(torch.linspace(1, 2, 20), seed=8)

    def f(t):
        out = t.clone()
        out[..., 0] = bad
        return out

    with pytest.raises(fl.NonFiniteError, match="gave NaN or inf on the Ritz values"):
        fl.funm_apply(A, torch.randn(2, 20, dtype=torch.float64), f, 10, tol=tol)


def test_exp_overflow_is_reported_not_returned():
    A, _ = spd_from_spectrum(torch.linspace(1, 1000, 20), seed=9)
    with pytest.raises(fl.NonFiniteError, match="f='exp'"):
        fl.funm_apply(A, torch.randn(20, dtype=torch.float64), "exp", 20)


def test_laplace_sample_m_zero_is_an_error():
    net = torch.nn.Linear(3, 2)
    data = (torch.randn(10, 3), torch.randint(0, 2, (10,)))
    post = fl.LaplacePosterior(net, torch.nn.CrossEntropyLoss(), data)
    with pytest.raises(ValueError, match="m .* must be >= 1, got 0"):
        post.sample(2, m=0)
    assert post.sample(2, m=3).shape == (2, 8)


# ---------------------------------------------------------------- true diagnoses


def asymmetric(n=30, seed=10, size=0.3):
    A, _ = spd_from_spectrum(torch.linspace(1, 2, n), seed=seed)
    g = torch.Generator().manual_seed(seed)
    return A + size * torch.triu(torch.randn(n, n, generator=g, dtype=torch.float64), 1)


@pytest.mark.parametrize("layout", [(30,), (3, 30)])
@pytest.mark.parametrize("tol", [None, 1e-10])
def test_asymmetric_operator_is_named_when_the_run_fails(layout, tol):
    B = asymmetric()
    with pytest.raises(fl.NotSymmetricError, match="not symmetric") as e:
        fl.inv_sqrt_apply(lambda V: V @ B.T, torch.randn(*layout, dtype=torch.float64), 30,
                          tol=tol)
    assert isinstance(e.value, ValueError)
    assert isinstance(e.value.__cause__, fl.NotPositiveDefiniteError | fl.NonFiniteError)


def test_symmetry_probe_up_front():
    B = asymmetric(size=1e-6)  # small enough for the run itself to succeed
    z = torch.randn(2, 30, dtype=torch.float64)
    assert torch.isfinite(fl.inv_sqrt_apply(B, z, 10)).all()
    with pytest.raises(fl.NotSymmetricError):
        fl.inv_sqrt_apply(B, z, 10, check_symmetry=True)
    A, _ = spd_from_spectrum(torch.linspace(1, 2, 30), seed=11)
    for zz in (z, z[0], z.float()):  # symmetric, in each layout and dtype: no false alarm
        AA = A.to(zz.dtype)
        fl.inv_sqrt_apply(AA, zz, 10, check_symmetry=True)
        fl.inv_sqrt_apply(lambda V: V @ AA, zz, 10, check_symmetry=True)


def test_symmetric_indefinite_stays_not_positive_definite():
    A, _ = spd_from_spectrum(torch.linspace(-0.5, 2.0, 30), seed=12)
    with pytest.raises(fl.NotPositiveDefiniteError):
        fl.inv_sqrt_apply(A, torch.randn(2, 30, dtype=torch.float64), 20)


def test_numpy_integer_z_names_the_numpy_dtype():
    A = np.eye(5)
    with pytest.raises(ValueError, match="NumPy array of dtype int64"):
        fl.inv_sqrt_apply(A, np.ones(5, dtype=np.int64), 2)
    with pytest.raises(ValueError, match="NumPy array of dtype float16"):
        fl.inv_sqrt_apply(A, np.ones(5, dtype=np.float16), 2)


def _failing_ql(monkeypatch, columns):
    """The compiled QL reporting 'no convergence' (NaN) for these matrices."""
    real = tridiag_module.tridiag_eigh_unchecked

    def fake(alpha, beta):
        theta, S = real(alpha, beta)
        theta, S = theta.clone(), S.clone()
        theta[columns], S[columns] = math.nan, math.nan
        return theta, S

    monkeypatch.setattr(tridiag_module, "tridiag_eigh_unchecked", fake)
    monkeypatch.setattr("fastlanczos.krylov.projected.tridiag_eigh_unchecked", fake)


def test_public_tridiag_eigh_falls_back_to_lapack(monkeypatch):
    a = torch.randn(3, 12, dtype=torch.float64)
    b = torch.randn(3, 11, dtype=torch.float64)
    ref = fl.tridiag_eigh(a, b)
    _failing_ql(monkeypatch, [1])
    theta, S = fl.tridiag_eigh(a, b)
    torch.testing.assert_close(theta, ref[0])
    T = tridiag_module.dense_tridiagonal(a[1], b[1])
    torch.testing.assert_close(T @ S[1], S[1] * theta[1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("tol", [None, 1e-10])
def test_engine_falls_back_to_lapack(monkeypatch, tol):
    A, _ = spd_from_spectrum(torch.logspace(0, -3, 40), seed=13)
    z = torch.randn(3, 40, dtype=torch.float64)
    ref = fl.inv_sqrt_apply(A, z, 40, tol=tol)
    _failing_ql(monkeypatch, [0, 2])
    x = fl.inv_sqrt_apply(A, z, 40, tol=tol)
    assert rel_err(x, ref) < 1e-12


def test_unsolvable_tridiagonal_is_a_named_value_error(monkeypatch):
    _failing_ql(monkeypatch, [1])

    def broken_eigh(T):
        raise torch.linalg.LinAlgError("simulated failure to converge")

    monkeypatch.setattr(torch.linalg, "eigh", broken_eigh)
    named = "tridiagonal 1 .* size 6" if fl.backend_info()["cpu"] == "extension" else "size 6"
    with pytest.raises(fl.TridiagonalConvergenceError, match=named):
        fl.tridiag_eigh(torch.randn(2, 6, dtype=torch.float64),
                        torch.randn(2, 5, dtype=torch.float64))
