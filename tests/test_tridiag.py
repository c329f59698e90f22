"""The public tridiag_eigh against scipy.linalg.eigh_tridiagonal, on the path in use
(compiled QL when built, torch.linalg.eigh otherwise) and on the pure-torch path."""

import numpy as np
import pytest
import scipy.linalg
import torch

import fastlanczos as fl
from fastlanczos.krylov.tridiag import dense_tridiagonal


def _cases(m, g):
    yield "random", torch.randn(3, m, generator=g), torch.randn(3, max(m - 1, 0), generator=g)
    grade = torch.logspace(0, -12, m)
    yield "graded", grade * torch.randn(m, generator=g), grade[1:] * torch.rand(m - 1, generator=g)
    yield "repeated", torch.ones(2, m), torch.zeros(2, m - 1)


@pytest.mark.parametrize("backend", ["default", "torch"])
@pytest.mark.parametrize("m", [1, 2, 7, 64])
def test_against_scipy(m, backend, monkeypatch):
    if backend == "torch":
        monkeypatch.setenv("FASTLANCZOS_BACKEND", "torch")
    g = torch.Generator().manual_seed(m)
    for name, a, b in _cases(m, g):
        a = a.double().reshape(-1, m)
        b = b.double().reshape(a.shape[0], m - 1)
        theta, S = fl.tridiag_eigh(a, b)
        assert theta.dtype == torch.float64 and S.shape == (a.shape[0], m, m)
        for c in range(a.shape[0]):
            ref = scipy.linalg.eigh_tridiagonal(a[c].numpy(), b[c].numpy(), eigvals_only=True)
            norm = max(np.abs(ref).max(), 1e-300)
            assert np.abs(theta[c].numpy() - ref).max() <= 20 * m * 2.2e-16 * norm, name
            T = dense_tridiagonal(a[c], b[c])
            resid = torch.linalg.matrix_norm(T @ S[c] - S[c] * theta[c])
            assert resid <= 20 * m * 2.2e-16 * norm, name
            eye = torch.eye(m, dtype=torch.float64)
            assert torch.linalg.matrix_norm(S[c].T @ S[c] - eye) <= 20 * m * 2.2e-16, name


def test_unbatched_and_float32_input():
    theta, S = fl.tridiag_eigh(torch.tensor([2.0, 2.0]), torch.tensor([1.0]))
    assert theta.dtype == torch.float64 and theta.shape == (2,)
    assert torch.allclose(theta, torch.tensor([1.0, 3.0], dtype=torch.float64))


def test_backend_info_reports_a_backend(monkeypatch):
    info = fl.backend_info()
    assert set(info) >= {"extension", "cpu", "cuda"}
    monkeypatch.setenv("FASTLANCZOS_BACKEND", "torch")
    assert fl.backend_info()["cpu"] == "torch"


def test_sizes_beyond_the_kernel_limit_use_the_torch_path():
    m = fl.ops.TRIDIAG_MAX_M + 3
    a = torch.linspace(1, 2, m, dtype=torch.float64).repeat(2, 1)
    b = torch.full((2, m - 1), 0.1, dtype=torch.float64)
    theta, S = fl.tridiag_eigh(a, b)
    ref = scipy.linalg.eigh_tridiagonal(a[0].numpy(), b[0].numpy(), eigvals_only=True)
    assert np.abs(theta[0].numpy() - ref).max() < 1e-12
