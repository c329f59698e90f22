"""Structural properties of the batched recurrence: orthonormal basis, the Lanczos relation,
lockstep products, blocks equal to column-by-column runs, breakdown and zero columns."""

import pytest
import torch
from conftest import dense_funm, rel_err, spd_from_spectrum
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlanczos as fl
from fastlanczos.krylov.tridiag import dense_tridiagonal


@pytest.mark.parametrize("reorth", ["full", "none"])
def test_orthonormal_basis_and_lanczos_relation(reorth, device):
    n, m, k = 200, 40, 3
    A, _ = spd_from_spectrum(torch.logspace(-2, 1, n), seed=1)
    A, z = A.to(device), torch.randn(k, n, dtype=torch.float64, device=device)
    r = fl.lanczos(A, z, m, reorth=reorth)
    assert r.basis.shape == (k, m, n) and r.alpha.shape == (k, m) and r.beta.shape == (k, m - 1)
    T = dense_tridiagonal(r.alpha, r.beta)
    for c in range(k):
        V = r.basis[c]
        lhs = A @ V.T
        rhs = V.T @ T[c]
        rhs[:, -1] += r.residual[c]
        assert torch.linalg.matrix_norm(lhs - rhs) < 1e-12 * torch.linalg.matrix_norm(A)
        if reorth == "full":  # without reorthogonalization orthogonality is lost as Ritz
            eye = torch.eye(m, dtype=V.dtype, device=device)  # values converge (Paige)
            assert torch.linalg.matrix_norm(V @ V.T - eye) < 1e-13
    assert torch.allclose(r.basis[:, 0], z / z.norm(dim=1, keepdim=True))


def test_one_product_per_step_on_the_whole_block():
    n, m, k = 100, 25, 6
    A, _ = spd_from_spectrum(torch.linspace(1, 3, n))
    seen = []

    def hvp(V):
        seen.append(tuple(V.shape))
        return V @ A

    fl.inv_sqrt_apply(hvp, torch.randn(k, n, dtype=torch.float64), m)
    assert seen == [(k, n)] * m
    seen.clear()
    fl.inv_sqrt_apply(hvp, torch.randn(n, dtype=torch.float64), m)
    assert seen == [(n,)] * m  # the callable sees the layout of z


def test_block_equals_column_by_column(device):
    n, m, k = 150, 50, 4
    A, _ = spd_from_spectrum(torch.logspace(-3, 0, n), seed=2)
    A = A.to(device)
    z = torch.randn(k, n, dtype=torch.float64, device=device)
    block = fl.inv_sqrt_apply(A, z, m)
    cols = torch.stack([fl.inv_sqrt_apply(A, z[i], m) for i in range(k)])
    assert rel_err(block.cpu(), cols.cpu()) < 1e-12


def test_invariant_subspace_ends_column_exactly():
    n = 400
    evals = torch.tensor([1.0, 2.0, 3.0, 5.0, 8.0]).repeat(n // 5)
    A, _ = spd_from_spectrum(evals, seed=3)
    z = torch.randn(3, n, dtype=torch.float64)
    for reorth in ("full", "none"):
        x, info = fl.inv_sqrt_apply(A, z, 40, reorth=reorth, return_info=True)
        assert info.steps.tolist() == [5, 5, 5]
        assert info.breakdown.all() and info.converged.all()
        assert rel_err(x, dense_funm(A, z, torch.rsqrt)) < 1e-13


def test_eigenvector_start_breaks_down_after_one_step():
    A, Q = spd_from_spectrum(torch.linspace(1, 4, 50), seed=4)
    z = 3.0 * Q[:, 7]
    x, info = fl.inv_sqrt_apply(A, z, 10, return_info=True)
    assert int(info.steps) == 1 and bool(info.breakdown)
    assert rel_err(x, dense_funm(A, z, torch.rsqrt)) < 1e-13


def test_zero_column_gives_zero_column(device):
    A, _ = spd_from_spectrum(torch.linspace(1, 4, 60))
    z = torch.randn(3, 60, dtype=torch.float64)
    z[1] = 0
    x, info = fl.inv_sqrt_apply(A.to(device), z.to(device), 20, tol=1e-8, return_info=True)
    assert torch.equal(x[1].cpu(), torch.zeros(60, dtype=torch.float64))
    assert torch.isfinite(x).all() and int(info.steps[1]) == 0
    assert rel_err(x[[0, 2]].cpu(), dense_funm(A, z[[0, 2]], torch.rsqrt)) < 1e-8


def test_tolerance_mode_stops_early_and_estimate_is_honest():
    n = 500
    A, _ = spd_from_spectrum(torch.logspace(-2, 0, n), seed=5)
    z = torch.randn(4, n, dtype=torch.float64)
    ref = dense_funm(A, z, torch.rsqrt)
    for tol in (1e-4, 1e-8, 1e-12):
        x, info = fl.inv_sqrt_apply(A, z, n, tol=tol, return_info=True)
        assert info.converged.all() and (info.error_estimate <= tol).all()
        assert info.products < n and info.products == int(info.steps.max())
        assert rel_err(x, ref) < 10 * tol


def test_tolerance_unreachable_reports_not_converged():
    n = 300
    A, _ = spd_from_spectrum(torch.logspace(-5, 0, n), seed=6)
    x, info = fl.inv_sqrt_apply(A, torch.randn(2, n, dtype=torch.float64), 30, tol=1e-10,
                                return_info=True)
    assert info.products == 30 and not info.converged.any()
    assert (info.error_estimate > 1e-10).all() and torch.isfinite(x).all()


def test_fixed_m_error_estimate_tracks_true_error():
    n = 300
    A, _ = spd_from_spectrum(torch.logspace(-3, 0, n), seed=7)
    z = torch.randn(3, n, dtype=torch.float64)
    ref = dense_funm(A, z, torch.rsqrt)
    for m in (40, 80, 160):
        x, info = fl.inv_sqrt_apply(A, z, m, return_info=True)
        err = rel_err(x, ref)
        est = info.error_estimate.max()
        assert est / 20 < err < 20 * est  # the same order of magnitude


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 60), k=st.integers(1, 4), log_kappa=st.floats(0, 6),
       seed=st.integers(0, 10_000), single=st.booleans())
def test_random_spectra_and_shapes(n, k, log_kappa, seed, single):
    g = torch.Generator().manual_seed(seed)
    evals = torch.logspace(-log_kappa, 0, n)[torch.randperm(n, generator=g)]
    A, _ = spd_from_spectrum(evals, seed=seed)
    z = torch.randn(n, dtype=torch.float64, generator=g) if single else \
        torch.randn(k, n, dtype=torch.float64, generator=g)
    x, info = fl.inv_sqrt_apply(A, z, n, return_info=True)
    assert x.shape == z.shape
    assert rel_err(x, dense_funm(A, z, torch.rsqrt)) < 1e-7 * max(1.0, 10**log_kappa) ** 0.5
    assert (info.steps <= n).all()
