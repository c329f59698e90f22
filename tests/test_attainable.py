"""The floor of the dtype: a tol below what the vectors' rounding lets x attain reports
converged=False with a warning, and its error estimate is at least that floor (krylov/
stopping.py, "the floor of the dtype"). Without it y = f(T) e_1 kept converging after x had
stopped: float32 at tol 1e-6 reported converged with errors of 1.1e-5 here."""

import warnings

import pytest
import torch
from conftest import dense_funm, spd_from_spectrum

import fastlanczos as fl
from fastlanczos.krylov.matfuncs import resolve
from fastlanczos.krylov.projected import attainable_term


def run(A, z, tol, m=300):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, info = fl.inv_sqrt_apply(A, z, m, tol=tol, return_info=True)
    return x, info, [w for w in caught if "below the accuracy" in str(w.message)]


def relative_error(x, ref):
    return (x.cpu().double() - ref).norm(dim=1) / ref.norm(dim=1)


def test_float32_below_its_floor_is_not_converged(device):
    A, _ = spd_from_spectrum(torch.logspace(-3, 0, 600), seed=1)
    z = torch.randn(4, 600, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = dense_funm(A, z, torch.rsqrt)
    A32, z32 = A.float().to(device), z.float().to(device)
    x, info, warned = run(A32, z32, 1e-6)
    err = relative_error(x, ref)
    assert err.min() > 1e-6  # the floor is real: no column attains tol
    assert len(warned) == 1 and "float32" in str(warned[0].message)
    assert not info.converged.any()
    assert (info.error_estimate.cpu().double() >= err).all()  # honest, not below the error
    x, info, warned = run(A32, z32, 1e-3)  # above the floor: as before
    assert not warned and info.converged.all() and (relative_error(x, ref) <= 1e-3).all()


@pytest.mark.parametrize("dtype,tols", [(torch.float32, (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)),
                                        (torch.float64, (1e-10, 1e-11, 1e-12, 1e-13))])
def test_converged_means_tol_is_met_down_to_the_floor(dtype, tols):
    """A power law k^-2 + 1e-4 (kappa 1e4): without the floor float64 at tol 1e-13 stopped
    with errors up to 16x tol and reported converged."""
    n = 1200
    A, _ = spd_from_spectrum(torch.arange(1, n + 1.0) ** -2.0 + 1e-4, seed=3)
    z = torch.randn(4, n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = dense_funm(A, z, torch.rsqrt)
    for tol in tols:
        x, info, warned = run(A.to(dtype), z.to(dtype), tol, m=400)
        err = relative_error(x, ref)
        assert (err[info.converged] <= tol).all(), (dtype, tol, err, info.converged)
        assert bool(warned) == (not info.converged.all())


def test_attainable_term_is_the_first_order_change_under_random_rounding():
    """Monte Carlo: A + dA with dA symmetric, entries of random sign and size s = eps l_max /
    sqrt(n) (what the floor assumes); the mean relative change of f(A) z against the term,
    from the exact (j = n) tridiagonal of A and z. Within 2x: the weights w^2 stand in for
    the uniform mean over eigenvalues."""
    n = 60
    g = torch.Generator().manual_seed(0)
    evals = torch.logspace(-2, 0, n, dtype=torch.float64)
    A, Q = spd_from_spectrum(evals, seed=4)
    z = torch.randn(1, n, dtype=torch.float64, generator=g)
    fn = resolve("inv_sqrt")[1]
    r = fl.lanczos(A, z, n)
    theta, S = fl.tridiag_eigh(r.alpha, r.beta)
    first = S[:, 0, :]
    y = (S * (fn(theta) * first).unsqueeze(1)).sum(-1)
    term = float(attainable_term(fn, theta, first, y))
    s = 1e-9 * float(evals.max()) / n ** 0.5  # a small perturbation: first order holds
    x = dense_funm(A, z, torch.rsqrt)
    changes = []
    for _ in range(40):
        E = torch.randn(n, n, dtype=torch.float64, generator=g) * s
        E = (E + E.T) / 2 ** 0.5  # symmetric, entries of variance s^2
        changes.append(float(((dense_funm(A + E, z, torch.rsqrt) - x).norm() / x.norm()) ** 2))
    measured = (sum(changes) / len(changes)) ** 0.5 / (1e-9 * float(evals.max()))
    assert 0.5 < term / measured < 2.0, (term, measured)


def test_only_a_stopped_column_is_converged(monkeypatch):
    """A column that runs out of steps is not converged, whatever its last report says. With
    every check after the first 16 steps sparse (such checks never stop a column), the run
    goes to m while the reports (the window's fit at sparse checks) fall below tol."""
    import math

    from fastlanczos.krylov import stopping

    A, _ = spd_from_spectrum(torch.linspace(1, 10, 300), seed=2)
    z = torch.randn(3, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x, info = fl.inv_sqrt_apply(A, z, 80, tol=1e-11, return_info=True)
    assert info.converged.all() and (info.steps < 80).all()  # the rule stops it
    monkeypatch.setattr(stopping.Stopping, "_schedule", lambda self, j, live, predicted:
                        setattr(self, "dense_from", 0 if j + 1 < 16 else math.inf))
    x, info = fl.inv_sqrt_apply(A, z, 80, tol=1e-11, return_info=True)
    assert (info.steps == 80).all() and (info.error_estimate <= 1e-11).all()
    assert not info.converged.any()
