"""On CUDA a fixed-m run never waits on the host; tolerance mode waits once per check."""

import warnings

import pytest
import torch
from conftest import spd_from_spectrum

import fastlanczos as fl
from fastlanczos.krylov.stopping import Stopping

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture
def problem():
    A, _ = spd_from_spectrum(torch.logspace(-3, 0, 512), seed=1)
    A = A.float().cuda()
    z = torch.randn(8, 512, device="cuda")
    torch.cuda.synchronize()
    return A, z


@pytest.mark.parametrize("reorth", ["full", "none"])
def test_fixed_m_makes_no_host_synchronization(problem, reorth):
    A, z = problem
    fl.inv_sqrt_apply(A, z, 32, reorth=reorth, check=False)  # warm-up: lazy init may sync
    torch.cuda.set_sync_debug_mode("error")
    try:
        x, info = fl.inv_sqrt_apply(A, z, 64, reorth=reorth, check=False, return_info=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(x).all() and info.steps.eq(64).all()


def test_tolerance_mode_synchronizes_once_per_check(problem, monkeypatch):
    A, z = problem
    fl.inv_sqrt_apply(A, z, 32, tol=1e-3)
    calls, on_check = [0], Stopping.on_check

    def counted(state, t, j):  # the schedule is adaptive: count the checks it made
        calls[0] += 1
        return on_check(state, t, j)
    monkeypatch.setattr(Stopping, "on_check", counted)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x, info = fl.inv_sqrt_apply(A, z, 200, tol=1e-4, check=False, return_info=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    checks = calls[0]
    assert 1 <= syncs <= checks, (syncs, checks)
