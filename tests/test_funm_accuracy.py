"""inv_sqrt_apply / funm_apply against float64 dense references and textbook Lanczos."""

import math

import pytest
import torch
from conftest import dense_funm, rel_err, spd_from_spectrum, textbook_lanczos_fa

import fastlanczos as fl

SPECTRA = {
    "well": lambda n: torch.linspace(1.0, 10.0, n),
    "kappa1e3": lambda n: torch.logspace(-3, 0, n),
    "kappa1e6": lambda n: torch.logspace(-6, 0, n),
    "clustered": lambda n: torch.cat([1 + 1e-3 * torch.rand(n - 10), torch.linspace(5, 50, 10)]),
    "repeated": lambda n: torch.cat([torch.full((n // 2,), 2.0),
                                     torch.logspace(-2, 1, n - n // 2)]),
    "few_distinct": lambda n: torch.tensor([0.5, 1.0, 4.0, 9.0]).repeat(n // 4),
}

# what any Lanczos reaches at m = n/2 on these spectra (kappa 1e6 is far from converged)
CONVERGED_BY_M_120 = {"well": 1e-12, "kappa1e3": 1e-5, "kappa1e6": 1.0, "clustered": 1e-12,
                      "repeated": 1e-7, "few_distinct": 1e-12}


@pytest.mark.parametrize("name", list(SPECTRA))
def test_inv_sqrt_matches_dense_and_textbook(name, device):
    n, m = 240, 120
    A, _ = spd_from_spectrum(SPECTRA[name](n))
    z = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = dense_funm(A, z, torch.rsqrt)
    x = fl.inv_sqrt_apply(A.to(device), z.to(device), m).cpu()
    book = torch.stack([textbook_lanczos_fa(A, z[i], m, torch.rsqrt) for i in range(3)])
    ours, theirs = rel_err(x, ref).item(), rel_err(book, ref).item()
    assert ours <= 3 * theirs + 1e-12, (ours, theirs)
    assert ours < CONVERGED_BY_M_120[name]


def test_full_krylov_space_is_exact():
    n = 60
    A, _ = spd_from_spectrum(torch.logspace(-4, 2, n), seed=3)
    z = torch.randn(2, n, dtype=torch.float64)
    assert rel_err(fl.inv_sqrt_apply(A, z, n), dense_funm(A, z, torch.rsqrt)) < 1e-10


@pytest.mark.parametrize("scale", [1e-8, 1e-4, 1.0, 1e4, 1e8])
def test_scale_invariance(scale):
    n, m = 200, 60
    A, _ = spd_from_spectrum(torch.logspace(-3, 0, n), seed=2)
    z = torch.randn(2, n, dtype=torch.float64)
    base = rel_err(fl.inv_sqrt_apply(A, z, m), dense_funm(A, z, torch.rsqrt))
    x = fl.inv_sqrt_apply(A * scale, z, m) * math.sqrt(scale)
    err = rel_err(x, dense_funm(A, z, torch.rsqrt))
    assert torch.isfinite(err) and abs(err - base) <= 1e-3 * base + 1e-13


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_scale_invariance_tolerance_mode(scale):
    n = 200
    A, _ = spd_from_spectrum(torch.logspace(-3, 0, n), seed=2)
    z = torch.randn(n, dtype=torch.float64)
    x, info = fl.inv_sqrt_apply(A * scale, z, n, tol=1e-8, return_info=True)
    assert bool(info.converged)
    assert rel_err(x * math.sqrt(scale), dense_funm(A, z, torch.rsqrt)) < 1e-6


def test_float32_error_does_not_grow_with_m(device):
    n = 400
    A, _ = spd_from_spectrum(torch.logspace(-3, 0, n), seed=4)
    A32 = A.float()
    z = torch.randn(4, n)
    ref = dense_funm(A32.double(), z.double(), torch.rsqrt)
    errs = [rel_err(fl.inv_sqrt_apply(A32.to(device), z.to(device), m).cpu(), ref).item()
            for m in (150, 250, 400)]
    assert errs[0] < 1e-4
    assert errs[-1] <= 2 * errs[0] + 1e-6, errs


@pytest.mark.parametrize("f,fn", [
    ("inv_sqrt", torch.rsqrt), ("sqrt", torch.sqrt), ("inv", torch.reciprocal),
    ("exp", torch.exp), ("log", torch.log), (lambda t: t**1.5, lambda t: t**1.5),
])
def test_matrix_functions(f, fn, device):
    n = 150
    A, _ = spd_from_spectrum(torch.linspace(0.1, 2.0, n), seed=5)
    z = torch.randn(2, n, dtype=torch.float64)
    x = fl.funm_apply(A.to(device), z.to(device), f, 80).cpu()
    assert rel_err(x, dense_funm(A, z, fn)) < 1e-10


def test_shift():
    n = 150
    A, _ = spd_from_spectrum(torch.linspace(0.0, 3.0, n), seed=6)  # singular without shift
    z = torch.randn(n, dtype=torch.float64)
    x = fl.inv_sqrt_apply(A, z, 100, shift=0.5)
    ref = dense_funm(A + 0.5 * torch.eye(n, dtype=torch.float64), z, torch.rsqrt)
    assert rel_err(x, ref) < 1e-10


def test_callable_hvp_same_as_dense(device):
    n = 120
    A, _ = spd_from_spectrum(torch.logspace(-2, 1, n), seed=7)
    A = A.to(device)
    z = torch.randn(5, n, dtype=torch.float64, device=device)
    x1 = fl.inv_sqrt_apply(A, z, 40)
    x2 = fl.inv_sqrt_apply(lambda V: V @ A, z, 40)
    assert rel_err(x1.cpu(), x2.cpu()) < 1e-10


def test_reorth_none_close_to_full():
    n = 300
    A, _ = spd_from_spectrum(torch.logspace(-2, 0, n), seed=8)
    z = torch.randn(3, n, dtype=torch.float64)
    ref = dense_funm(A, z, torch.rsqrt)
    x, info = fl.inv_sqrt_apply(A, z, 120, reorth="none", return_info=True)
    assert rel_err(x, ref) < 1e-8
    assert info.products == 120 + 119  # second pass regenerates the basis


def test_float32_and_float64_dtypes_preserved(device):
    A, _ = spd_from_spectrum(torch.linspace(1, 2, 50))
    for dt in (torch.float32, torch.float64):
        z = torch.randn(50, dtype=dt, device=device)
        x = fl.inv_sqrt_apply(A.to(dt).to(device), z, 20)
        assert x.dtype == dt and x.shape == z.shape and x.device == z.device


@pytest.mark.skipif(not fl.ops.available(), reason="compiled extension not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tol", [None, 1e-6])
def test_extension_and_pure_torch_give_the_same_answer(device, dtype, tol, monkeypatch):
    if not fl.ops.supports(device):
        pytest.skip(f"extension has no kernels for {device}")
    n = 300
    A, _ = spd_from_spectrum(torch.logspace(-3, 0, n), seed=9)
    A = A.to(dtype).to(device)
    z = torch.randn(4, n, dtype=dtype, device=device)
    x_ext, info_ext = fl.inv_sqrt_apply(A, z, 120, tol=tol, return_info=True)
    monkeypatch.setenv("FASTLANCZOS_BACKEND", "torch")
    x_ref, info_ref = fl.inv_sqrt_apply(A, z, 120, tol=tol, return_info=True)
    close = 1e-4 if dtype == torch.float32 else 1e-10
    assert rel_err(x_ext.cpu(), x_ref.cpu()) < close
    assert (info_ext.steps - info_ref.steps).abs().max() <= 4  # at most one check apart
