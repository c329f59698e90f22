"""Host synchronizations, counted on the CPU with tests/host_sync.py.

A fixed-m run on a GPU must never wait for the host, and a tolerance run waits once per
check. The Python layer decides that, and it is the same code on every device, so these
tests run it on the CPU with the CUDA routing (the compiled QL for every m up to
TRIDIAG_MAX_M, the fused step for k >= 2) and count what would synchronize there.
tests/test_cuda_sync.py checks the same with torch.cuda.set_sync_debug_mode on a GPU.
"""

import collections

import pytest
import torch
from conftest import spd_from_spectrum
from host_sync import HostSyncProbe

import fastlanczos as fl
from fastlanczos.curvature import ef_vp, ggn_vp, hessian_vp
from fastlanczos.krylov import reorth as reorth_module
from fastlanczos.krylov.stopping import Stopping

BACKENDS = ["extension", "torch"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    # the per-column masks (partial's passes, the done columns) are read only on the CPU,
    # where they live in host memory; route them as on a GPU
    monkeypatch.setattr(reorth_module, "branch_on_mask", lambda device: False)
    if request.param == "torch":
        monkeypatch.setenv("FASTLANCZOS_BACKEND", "torch")
    elif not fl.ops.available():
        pytest.skip("extension not built")
    else:  # route the CPU like the GPU: the compiled QL for every m it accepts
        monkeypatch.delenv("FASTLANCZOS_BACKEND", raising=False)  # also in the torch-forced run
        monkeypatch.setattr(fl.ops, "CPU_QL_MAX_M", fl.ops.TRIDIAG_MAX_M)
    return request.param


@pytest.fixture
def problem():
    A, _ = spd_from_spectrum(torch.logspace(-3, 0, 300), seed=1)
    return A.float(), torch.randn(8, 300)


def test_probe_counts_what_would_synchronize():
    t = torch.arange(4.0)
    with HostSyncProbe() as probe:
        t.sum().item()
        bool(t.any())
        t.nonzero()
        t.tolist()
        torch.linalg.eigh(torch.eye(2))
        host = t.cpu()
        (host * 2).nonzero()  # already on the host: free
        float(host[1])
        u = t * 2  # stays on the device: free
    assert probe.events == ["aten._local_scalar_dense", "aten._local_scalar_dense",
                            "aten.nonzero", "Tensor.tolist", "aten._linalg_eigh", "Tensor.cpu"]
    assert torch.equal(u, 2 * t) and torch.equal(host, t)


@pytest.mark.parametrize("reorth", ["full", "partial", "none"])
def test_fixed_m_reads_nothing_back(problem, backend, reorth, monkeypatch):
    A, z = problem
    with HostSyncProbe() as probe:
        x, info = fl.inv_sqrt_apply(A, z, 100, reorth=reorth, check=False, return_info=True)
    assert info.steps.eq(100).all() and torch.isfinite(x).all()
    if backend == "extension":
        assert probe.events == []
    else:  # torch.linalg.eigh on CUDA reads cuSOLVER's info: one per eigen-solve (two)
        assert probe.events == ["aten._linalg_eigh"] * 2


@pytest.mark.parametrize("check", [False, True])
@pytest.mark.parametrize("reorth", ["full", "none"])
def test_tolerance_mode_reads_once_per_check(problem, backend, reorth, check, monkeypatch):
    A, z = problem
    calls, on_check = [0], Stopping.on_check

    def counted(state, t, j):  # the schedule is adaptive: count the checks it made
        calls[0] += 1
        return on_check(state, t, j)
    monkeypatch.setattr(Stopping, "on_check", counted)
    with HostSyncProbe() as probe:
        x, info = fl.inv_sqrt_apply(A, z, 300, tol=1e-4, reorth=reorth, check=check,
                                    return_info=True)
    steps = int(info.steps.max())
    assert 20 < steps < 300 and info.converged.all()
    checks = calls[0]
    reads = collections.Counter(probe.events)
    solves = reads.pop("aten._linalg_eigh", 0)
    # check=True: the input's finiteness, one combined read per check, the final validation
    assert sum(reads.values()) == checks + (2 if check else 0), probe.events
    assert solves == (0 if backend == "extension" else checks)


@pytest.mark.parametrize("tol", [None, 1e-4])
def test_a_lower_bound_adds_no_read(problem, backend, tol, monkeypatch):
    """eig_lower_bound: the Gauss-Radau estimate is tensor work inside the checks (a second
    tridiagonal solve each), so fixed m still reads nothing and tol once per check."""
    A, z = problem
    calls, on_check = [0], Stopping.on_check

    def counted(state, t, j):
        calls[0] += 1
        return on_check(state, t, j)
    monkeypatch.setattr(Stopping, "on_check", counted)
    with HostSyncProbe() as probe:
        x, info = fl.inv_sqrt_apply(A, z, 100 if tol is None else 300, tol=tol, check=False,
                                    eig_lower_bound=1e-3 * (1 - 1e-3), return_info=True)
    reads = collections.Counter(probe.events)
    solves = reads.pop("aten._linalg_eigh", 0)
    assert sum(reads.values()) == (0 if tol is None else calls[0]), probe.events
    assert solves == (0 if backend == "extension" else 2 * calls[0])
    if tol is None:
        assert calls[0] == 1  # the estimate needs no earlier iterate: one solve at the end
    else:
        assert info.converged.all() and 20 < int(info.steps.max()) < 300


def _tiny_classifier():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    return net, (torch.randn(64, 5), torch.randint(0, 3, (64,)))


@pytest.mark.parametrize("name", ["ggn", "ggn-cached", "ggn-jvp", "hessian", "ef"])
def test_curvature_products_read_nothing_back(name):
    net, data = _tiny_classifier()
    loss = torch.nn.CrossEntropyLoss()
    hvp = {"ggn": lambda: ggn_vp(net, loss, data),
           "ggn-cached": lambda: ggn_vp(net, loss, data, cache=True),
           "ggn-jvp": lambda: ggn_vp(net, loss, data, method="jvp"),
           "hessian": lambda: hessian_vp(net, loss, data),
           "ef": lambda: ef_vp(net, loss, data)}[name]()
    V = torch.randn(4, hvp.num_params)
    first = hvp(V)  # the first call may look at the data (output count, cache fill)
    with HostSyncProbe() as probe:
        again = hvp(V)
    assert probe.events == [] and torch.allclose(first, again, rtol=1e-5, atol=1e-6)


def test_laplace_fixed_m_sample_reads_back_only_to_validate(backend):
    net, data = _tiny_classifier()
    post = fl.LaplacePosterior(net, torch.nn.CrossEntropyLoss(), data, prior_precision=1.0)
    post.sample(4, m=8, tol=None)  # warm-up; also builds and keeps the preconditioner choice
    with HostSyncProbe() as probe:
        post.sample(4, m=40, tol=None)
    reads = collections.Counter(probe.events)
    solves = reads.pop("aten._linalg_eigh", 0)
    assert reads == {"aten._local_scalar_dense": 1, "Tensor.cpu": 1}  # input, final check
    assert solves == (0 if backend == "extension" else 2)
