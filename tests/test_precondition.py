"""Exact preconditioned sampling x = G (G A G)^{-1/2} z: the identity-block trick gives
X^T X = A^{-1} exactly (for any SPD P); every sample satisfies x^T A x = z^T z; each draw
matches its own dense reference; the Nystrom sketch against eigh; what "auto" chooses on a
spectrum with outliers (a GGN over a null space) and on a flat one (a GMRF); clear errors."""

import math

import numpy as np
import pytest
import torch

import fastlanczos as fl
from fastlanczos.errors import LanczosInputError, NotPositiveDefiniteError
from fastlanczos.gmrf import grid_precision
from fastlanczos.krylov.nystrom import NystromSketch
from fastlanczos.krylov.nystrom_auto import PROBE_RANK
from fastlanczos.krylov.nystrom_rank import model_steps


def with_spectrum(spec, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(spec.numel(), spec.numel(), generator=g,
                                       dtype=torch.float64))
    return (q * spec) @ q.T


def ggn_like(n=400, outliers=60, seed=0):
    """A GGN's shape: log-spread outliers, a decaying middle, a null space (prior added by
    the caller as shift)."""
    spec = torch.zeros(n, dtype=torch.float64)
    spec[:outliers] = torch.logspace(4, 0, outliers, dtype=torch.float64)
    spec[outliers:2 * outliers] = torch.logspace(0, -3, outliers, dtype=torch.float64)
    return with_spectrum(spec, seed)


def dense_root(A, G):
    """The dense R = G (G A G)^{-1/2} of a preconditioner with root matrix G."""
    w, q = torch.linalg.eigh(G @ A @ G)
    return G @ (q * w.rsqrt()) @ q.T


def root_matrix(pre, n):
    return pre.root(torch.eye(n, dtype=pre.u.dtype))  # G is symmetric: rows = columns


@pytest.mark.parametrize("kind", ["nystrom", "rank", "diag", "tensor"])
def test_identity_block_gives_inverse_covariance(kind):
    n, shift = 60, 0.5
    B = ggn_like(n, 12)
    A = B + shift * torch.eye(n, dtype=torch.float64)
    pre = {"nystrom": "nystrom", "diag": "diag",
           "rank": fl.nystrom_preconditioner(B, n, rank=10, shift=shift),
           "tensor": A.diagonal() * torch.linspace(0.5, 2.0, n, dtype=torch.float64)}[kind]
    X, info = fl.inv_root_apply(B, torch.eye(n, dtype=torch.float64), n, shift=shift,
                                precondition=pre, return_info=True)
    torch.testing.assert_close(X.T @ X, torch.linalg.inv(A), rtol=0, atol=1e-9)
    if kind in ("nystrom", "rank"):
        assert info.preconditioner_rank >= 10 and info.preconditioner_products >= (
            0 if kind == "rank" else 16)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_every_sample_has_unit_energy_and_matches_its_own_reference(dtype, tol):
    """x^T A x = z^T z exactly for x = R z with R^T A R = I; and x against the dense
    R = G (G A G)^{-1/2} for this very preconditioner (a different draw than A^{-1/2} z)."""
    n, shift = 240, 1.0
    B = ggn_like(n, 40)
    A = B + shift * torch.eye(n, dtype=torch.float64)
    z = torch.randn(8, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pre = fl.nystrom_preconditioner(B.to(dtype), n, rank=48, shift=shift)
    x, info = fl.inv_root_apply(B.to(dtype), z.to(dtype), 150, shift=shift, precondition=pre,
                                tol=tol, return_info=True)
    x = x.double()
    energy = ((x @ A) * x).sum(1) / (z * z).sum(1)
    assert (energy - 1).abs().max() < (1e-8 if dtype == torch.float64 else 1e-3)
    G = root_matrix(pre, n).double()
    ref = z @ dense_root(A, G).T
    err = torch.linalg.vector_norm(x - ref, dim=1) / torch.linalg.vector_norm(ref, dim=1)
    assert err.max() < 10 * tol
    plain = fl.inv_sqrt_apply(B.to(dtype), z.to(dtype), 150, shift=shift, tol=tol,
                              return_info=True)[1]
    assert info.steps.max() < 0.5 * plain.steps.max()  # the point of it


def test_nystrom_sketch_is_exact_for_low_rank_and_a_lower_bound_otherwise():
    n = 200
    spec = torch.zeros(n, dtype=torch.float64)
    spec[:20] = torch.logspace(3, 0, 20, dtype=torch.float64)
    B = with_spectrum(spec)
    sk = NystromSketch(lambda V: V @ B, n, torch.float64, "cpu")
    sk.grow(30)
    u, lam = sk.eigen()
    torch.testing.assert_close(u.T @ torch.diag(lam) @ u, B, rtol=0, atol=1e-9)
    torch.testing.assert_close(u @ u.T, torch.eye(30, dtype=torch.float64), rtol=0, atol=1e-12)
    full = ggn_like(n)
    sk = NystromSketch(lambda V: V @ full, n, torch.float64, "cpu")
    sk.grow(16)
    sk.grow(16)  # grown in place: 32 orthonormal rows, 32 products
    assert sk.products == 32
    torch.testing.assert_close(sk.omega @ sk.omega.T, torch.eye(32, dtype=torch.float64),
                               rtol=0, atol=1e-12)
    lam = sk.eigen()[1]
    true = torch.linalg.eigvalsh(full).flip(0)[:32]
    assert bool((lam <= true * (1 + 1e-10) + 1e-10).all())  # Nystrom never overshoots


def curvature_like(n=400):
    """ggn_like's spectrum as a product as dear as a curvature's: B = F F^T with F (n, 8 n)
    (a dense n = 400 product costs about what the O(n r) root does, and auto weighs that)."""
    B = ggn_like(n)
    w, q = torch.linalg.eigh(B)
    f = (q * w.clamp_min(0).sqrt()) @ torch.linalg.qr(torch.randn(8 * n, n, dtype=B.dtype))[0].T
    return lambda V: (V @ f) @ f.T


def test_auto_grows_for_outliers_and_declines_a_flat_spectrum():
    n, shift = 400, 1.0
    B = curvature_like(n)
    pre = fl.nystrom_preconditioner(B, n, shift=shift, num_vectors=8)
    assert pre.rank >= 64  # 60 outliers and a decaying middle over the floor
    z = torch.randn(8, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, auto = fl.inv_root_apply(B, z, 300, shift=shift, tol=1e-6, precondition="auto",
                                return_info=True)
    _, plain = fl.inv_root_apply(B, z, 300, shift=shift, tol=1e-6, return_info=True)
    assert auto.preconditioner_rank > 0
    assert 8 * auto.products + auto.preconditioner_products < 0.5 * 8 * plain.products
    Q = grid_precision((30, 30), 0.1)  # a GMRF: slow decay, nothing for a sketch to take
    x, info = fl.sample_gaussian(Q, 8, seed=1, precondition="auto", return_info=True)
    # declined after the probe, which is counted: its products were spent
    assert info.preconditioner_rank == 0 and info.preconditioner_products == PROBE_RANK


def test_model_steps_counts_lanczos_steps():
    d = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)  # 4 distinct values: exact at 4
    assert model_steps(d, 1e-12, every=1) == 4
    assert model_steps(torch.ones(50, dtype=torch.float64), 1e-12) == 1  # one eigenvalue
    spread = torch.logspace(0, 4, 200, dtype=torch.float64)
    assert model_steps(spread, 1e-3) < model_steps(spread, 1e-9)


def test_sample_gaussian_preconditioned_has_the_right_covariance():
    Q = grid_precision((6, 6), 0.3)
    cov = np.linalg.inv(Q.toarray())
    for pre in ("diag", "nystrom"):
        X = fl.sample_gaussian(Q, 3000, seed=5, precondition=pre, tol=1e-4)
        emp = X.T @ X / X.shape[0]
        scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        assert np.abs((emp - cov) / scale).max() < 0.12  # ~6 standard errors of 1/sqrt(3000)


def test_laplace_sample_reuses_its_sketch():
    from dense_curvature import mlp

    torch.manual_seed(0)
    net = mlp(inputs=5, classes=3).double()
    x, y = torch.randn(30, 5, dtype=torch.float64), torch.randint(0, 3, (30,))
    post = fl.LaplacePosterior(net, torch.nn.CrossEntropyLoss(), (x, y), prior_precision=0.1)
    _, first = post.sample(4, tol=1e-8, precondition="nystrom", return_info=True)
    _, again = post.with_prior_precision(0.2).sample(4, tol=1e-8, precondition="nystrom",
                                                     return_info=True)
    assert first.preconditioner_products >= 16 and first.preconditioner_rank >= 16
    assert again.preconditioner_products == 0  # the curvature's sketch is shared
    assert bool(first.converged.all()) and bool(again.converged.all())


def test_progress_bar_gives_the_same_answer(monkeypatch):
    A = ggn_like(100, 20) + torch.eye(100, dtype=torch.float64)
    z = torch.randn(3, 100, dtype=torch.float64)
    want = fl.inv_root_apply(A, z, 60, tol=1e-8)
    pytest.importorskip("tqdm")
    torch.testing.assert_close(fl.inv_root_apply(A, z, 60, tol=1e-8, progress=True), want,
                               rtol=0, atol=0)
    monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)  # tqdm missing
    with pytest.warns(RuntimeWarning, match="tqdm"):
        got = fl.inv_root_apply(A, z, 60, tol=1e-8, progress=True)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_bad_preconditioners_give_clear_errors():
    n = 30
    A = ggn_like(n, 5) + torch.eye(n, dtype=torch.float64)
    z = torch.randn(n, dtype=torch.float64)
    with pytest.raises(LanczosInputError, match="precondition must be one of"):
        fl.inv_root_apply(A, z, 10, precondition="cholesky")
    with pytest.raises(LanczosInputError, match="diagonal"):
        fl.inv_root_apply(lambda v: v @ A, z, 10, precondition="diag")
    with pytest.raises(LanczosInputError, match="positive, finite"):
        fl.inv_root_apply(A, z, 10, precondition=-torch.ones(n, dtype=torch.float64))
    with pytest.raises(LanczosInputError, match="rank must be"):
        fl.nystrom_preconditioner(A, n, rank=0)
    indefinite = with_spectrum(torch.linspace(-1, 1, n, dtype=torch.float64))
    with pytest.raises(NotPositiveDefiniteError, match="Nystrom"):
        fl.nystrom_preconditioner(indefinite, n, rank=n)
    assert math.isfinite(fl.inv_root_apply(A, z, n, precondition="auto").sum().item())
