"""The compiled kernels (fastlanczos._C) against float64 references.

tridiag_eigh is checked against scipy's eigh_tridiagonal and by properties (orthonormal
eigenvectors, small residual); reorth_step against reorth.cgs2_step_torch, the reference that
defines its semantics.
"""

import ctypes
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fastlanczos import ops
from fastlanczos.krylov.reorth import cgs2_step_torch

pytestmark = pytest.mark.skipif(
    not ops.available(),
    reason=f"fastlanczos._C is not built ({ops.load_error()}); pip install --no-build-isolation .",
)

scipy_linalg = pytest.importorskip("scipy.linalg")

EPS = float(np.finfo(np.float64).eps)
NO_GPU = "no CUDA device here (CUDA cases run on a GPU machine)"
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)),
]


# The CUDA kernel's program (csrc/tridiag_team.h) run by one CPU thread: tests/team_serial.cpp.
SERIAL_TEAM = "gpu-program-on-cpu"
TRIDIAG_TARGETS = [*DEVICES, SERIAL_TEAM]


def _need(device):
    if device == SERIAL_TEAM:
        if _serial_team() is None:
            pytest.skip("no C++ compiler to build tests/team_serial.cpp")
    elif not ops.supports(device):
        pytest.skip(f"the extension has no {device} kernels in this build")


@functools.cache
def _serial_team():
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return None
    out = Path(tempfile.mkdtemp()) / "team_serial.so"
    src = Path(__file__).parent / "team_serial.cpp"
    subprocess.run([cxx, "-O2", "-std=c++17", "-shared", "-fPIC", str(src), "-o", str(out)],
                   check=True)
    fn = ctypes.CDLL(str(out)).tridiag_eigh_serial_team
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                   ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = None
    return fn


def tridiag_eigh_on(target, a, b):
    """ops.tridiag_eigh on a device, or the GPU kernel's program on the CPU."""
    if target != SERIAL_TEAM:
        return ops.tridiag_eigh(a.to(target), b.to(target))
    a, b = a.double().contiguous(), b.double().contiguous()
    k, m = a.shape
    theta, S = a.new_empty(k, m), a.new_empty(k, m, m)
    _serial_team()(a.data_ptr(), b.data_ptr(), k, m, theta.data_ptr(), S.data_ptr())
    return theta, S


# ---------------------------------------------------------------- tridiagonal test matrices


def random_tridiag(k, m, gen):
    return torch.randn(k, m, generator=gen, dtype=torch.float64), torch.randn(
        k, m - 1, generator=gen, dtype=torch.float64
    )


def graded_tridiag(k, m, gen, reverse=False):
    """Entries falling geometrically from 1 to 1e-12 (or rising, reversed)."""
    scale = torch.logspace(0, -12, m, dtype=torch.float64)
    a = (torch.rand(k, m, generator=gen, dtype=torch.float64) + 0.5) * scale
    b = (torch.rand(k, m - 1, generator=gen, dtype=torch.float64) + 0.5) * scale[1:]
    return (a.flip(1), b.flip(1)) if reverse else (a, b)


def glued_wilkinson(k, m, glue=1e-10):
    """Copies of W21+ (diagonal |10 - i|, off-diagonal 1) glued by tiny off-diagonals: very
    close eigenvalue pairs, a classic hard case for eigenvector orthogonality."""
    w = torch.tensor([abs(10.0 - i) for i in range(21)], dtype=torch.float64)
    a = w.repeat(m // 21 + 1)[:m]
    b = torch.ones(m - 1, dtype=torch.float64)
    b[20::21] = glue
    return a.expand(k, m).clone(), b.expand(k, m - 1).clone()


def repeated_eigenvalues(k, m):
    """Identity blocks joined by exact zeros and a 2x2 block: multiple eigenvalues."""
    a = torch.ones(k, m, dtype=torch.float64)
    b = torch.zeros(k, m - 1, dtype=torch.float64)
    if m >= 3:
        a[:, m // 2] = 3.0
        b[:, m // 2 - 1] = 0.0
        b[:, m // 2] = 1.0  # couples m//2 and m//2 + 1
    return a, b


def dense(a, b):
    T = torch.diag_embed(a)
    if b.shape[-1]:
        T = T + torch.diag_embed(b, 1) + torch.diag_embed(b, -1)
    return T


def check_eigh(a, b, theta, S, c=4.0):
    """Eigenvalues within c*sqrt(m) eps ||T|| of LAPACK's; S orthonormal and T S = S Theta to
    O(m eps ||T||)."""
    k, m = a.shape
    theta, S = theta.cpu(), S.cpu()
    T = dense(a, b)
    eye = torch.eye(m, dtype=torch.float64)
    for i in range(k):
        ref = scipy_linalg.eigh_tridiagonal(a[i].numpy(), b[i].numpy(), eigvals_only=True)
        norm = max(float(np.abs(ref).max()), 1e-300)
        assert np.abs(theta[i].numpy() - ref).max() <= c * np.sqrt(m) * EPS * norm
        assert (S[i].T @ S[i] - eye).abs().max() <= c * m * EPS
        assert (T[i] @ S[i] - S[i] * theta[i]).abs().max() <= c * m * EPS * norm


CASES = {
    "random": lambda k, m, g: random_tridiag(k, m, g),
    "diagonal": lambda k, m, g: (torch.randn(k, m, generator=g, dtype=torch.float64),
                                 torch.zeros(k, m - 1, dtype=torch.float64)),
    "graded_down": lambda k, m, g: graded_tridiag(k, m, g),
    "graded_up": lambda k, m, g: graded_tridiag(k, m, g, reverse=True),
    "wilkinson": lambda k, m, g: glued_wilkinson(k, m),
    "repeated": lambda k, m, g: repeated_eigenvalues(k, m),
}


@pytest.mark.parametrize("device", TRIDIAG_TARGETS)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("m", [1, 2, 3, 17, 64, 255, 512])
def test_tridiag_eigh_matches_lapack(device, case, m):
    _need(device)
    if m == 512 and case in ("wilkinson", "repeated"):
        pytest.skip("kept short: 512 runs on random and graded matrices only")
    gen = torch.Generator().manual_seed(m)
    k = 1 if m >= 255 else 3
    a, b = CASES[case](k, m, gen)
    theta, S = tridiag_eigh_on(device, a, b)
    assert theta.shape == (k, m) and S.shape == (k, m, m)
    assert (theta[:, 1:] >= theta[:, :-1]).all()
    check_eigh(a, b, theta, S)


@pytest.mark.parametrize("device", TRIDIAG_TARGETS)
def test_tridiag_eigh_trivial_sizes(device):
    _need(device)
    a = torch.tensor([[2.5], [-1.0]], dtype=torch.float64)
    b = torch.empty(2, 0, dtype=torch.float64)
    theta, S = tridiag_eigh_on(device, a, b)
    assert torch.equal(theta.cpu(), a)
    assert torch.equal(S.cpu(), torch.ones(2, 1, 1, dtype=a.dtype))
    theta, S = tridiag_eigh_on(device, a[:0], b[:0])
    assert theta.shape == (0, 1) and S.shape == (0, 1, 1)


@pytest.mark.parametrize("device", TRIDIAG_TARGETS)
def test_tridiag_eigh_nonfinite_gives_nan(device):
    """A matrix with NaN or inf gets NaN eigenvalues; its neighbours in the batch are unaffected."""
    _need(device)
    a, b = random_tridiag(3, 8, torch.Generator().manual_seed(1))
    a[0, 3] = float("nan")
    b[2, 5] = float("inf")
    theta, S = tridiag_eigh_on(device, a, b)
    assert theta[0].isnan().all() and theta[2].isnan().all()
    check_eigh(a[1:2], b[1:2], theta[1:2], S[1:2])


@pytest.mark.parametrize("device", TRIDIAG_TARGETS)
def test_tridiag_eigh_splits_exactly(device):
    """Block-diagonal T: every eigenvector lives in one block, with exact zeros elsewhere (the
    Lanczos code pads finished columns this way)."""
    _need(device)
    a, b = random_tridiag(4, 12, torch.Generator().manual_seed(2))
    b[:, 5] = 0.0
    b[1, 2] = 0.0
    theta, S = tridiag_eigh_on(device, a, b)
    S = S.cpu()
    in_lead = (S[:, :6] != 0).any(1)
    in_tail = (S[:, 6:] != 0).any(1)
    assert not (in_lead & in_tail).any()
    assert in_tail.sum(1).eq(6).all()
    check_eigh(a, b, theta, S)


@pytest.mark.parametrize("device", DEVICES)
def test_tridiag_eigh_rejects_bad_input(device):
    _need(device)
    a = torch.zeros(2, 4, device=device)
    with pytest.raises(RuntimeError, match="float64"):
        ops.tridiag_eigh(a, torch.zeros(2, 3, device=device))
    with pytest.raises(RuntimeError, match="m - 1"):
        ops.tridiag_eigh(a.double(), torch.zeros(2, 4, dtype=torch.float64, device=device))


@pytest.mark.parametrize("op", ["tridiag_eigh", "reorth_step"])
def test_cpu_results_do_not_depend_on_threads_or_batch(op):
    """Reproducible samples: the CPU kernels split work by problem size only, never by the
    thread count or the other columns of the batch, and add partial sums in a fixed order."""
    _need("cpu")
    threads = torch.get_num_threads()
    a, b = random_tridiag(5, 40, torch.Generator().manual_seed(4))
    basis0, w0 = make_step(5, 48, 100003, 45, torch.float64, "cpu", seed=4)

    def run(nthreads, rows):
        torch.set_num_threads(nthreads)
        try:
            if op == "tridiag_eigh":
                return ops.tridiag_eigh(a[rows], b[rows])
            basis, w = basis0[rows].clone(), w0[rows].clone()
            alpha, beta = ops.reorth_step(basis, w, 45)
            return alpha, beta, w, basis[:, 46]
        finally:
            torch.set_num_threads(threads)

    every = list(range(5))
    reference = run(1, every)
    for nthreads, rows in [(2, every), (3, every), (2, [3]), (1, [1, 3])]:
        out = run(nthreads, rows)
        for got, want in zip(out, reference):
            assert torch.equal(got, want[rows]), (nthreads, rows)


# ---------------------------------------------------------------- reorth_step


def make_step(k, m, n, j, dtype, device, seed=0):
    """basis with orthonormal rows 0..j (garbage after), and w = A v_j stand-in."""
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(k, m, n, generator=gen, dtype=torch.float64)
    q = torch.linalg.qr(basis[:, : j + 1].transpose(1, 2))[0]
    basis[:, : j + 1] = q.transpose(1, 2)
    w = torch.randn(k, n, generator=gen, dtype=torch.float64) + 0.5 * basis[:, j]
    return basis.to(dtype=dtype, device=device), w.to(dtype=dtype, device=device)


def run_both(basis, w, j):
    b1, w1, b2, w2 = basis.clone(), w.clone(), basis.clone(), w.clone()
    out1 = ops.reorth_step(b1, w1, j)
    out2 = cgs2_step_torch(b2, w2, j)
    return (b1, w1, *out1), (b2, w2, *out2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "k,m,n,j",
    [(1, 1, 10, 0), (3, 5, 1000, 0), (2, 6, 4097, 3), (4, 8, 70001, 7), (2, 40, 3001, 39),
     (3, 70, 2049, 65), (1, 64, 100003, 62)],
)
def test_reorth_step_float64_matches_reference(device, k, m, n, j):
    _need(device)
    basis, w = make_step(k, m, n, j, torch.float64, device)
    (b1, w1, a1, be1), (b2, w2, a2, be2) = run_both(basis, w, j)
    assert a1.dtype == be1.dtype == torch.float64 and a1.shape == be1.shape == (k,)
    torch.testing.assert_close(a1, a2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(be1, be2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w1, w2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b1, b2, rtol=1e-10, atol=1e-12)
    if j + 1 == m:
        assert torch.equal(b1, basis)  # no row to write


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k,m,n,j", [(2, 8, 5000, 0), (4, 16, 20001, 9), (3, 12, 999, 11),
                                     (1, 40, 60001, 37)])
def test_reorth_step_float32_at_least_as_accurate_as_torch(device, k, m, n, j):
    """float32 vectors: our error against a float64 run is at most a small multiple of the
    plain-torch float32 error (our dot products are float64, so usually smaller)."""
    _need(device)
    basis, w = make_step(k, m, n, j, torch.float64, device)
    _, (b64, w64, a64, be64) = run_both(basis, w, j)
    (b1, w1, a1, be1), (b2, w2, a2, be2) = run_both(basis.float(), w.float(), j)

    def err(x, ref):
        return (x.double() - ref).abs().max().item()

    floor = 1e-7
    assert err(a1, a64) <= 2 * err(a2, a64) + floor * (1 + a64.abs().max().item())
    assert err(be1, be64) <= 2 * err(be2, be64) + floor * be64.max().item()
    assert err(w1, w64) <= 2 * err(w2, w64) + floor
    assert err(b1, b64) <= 2 * err(b2, b64) + floor


def test_full_float32_floor_is_the_kernels(one_thread, monkeypatch):
    """reorth="full" keeps the compiled step for float32 on one CPU thread and k = 1, where
    torch's BLAS would be faster: BLAS rounds w -= V^T h in float32 against ||A v_j||, the
    kernel once from float64. inv_sqrt on logspace 1e-3..1 (n = 1e5, m = 300): measured
    8.4e-7 with the kernel, 4.5e-6 on the plain-torch path, against float64."""
    import fastlanczos as fl
    from fastlanczos.krylov import lanczos as lanczos_module

    monkeypatch.delenv("FASTLANCZOS_BACKEND", raising=False)  # the extension's path, always
    n = 100_000
    lam = torch.logspace(-3, 0, n, dtype=torch.float64)
    z = torch.randn(1, n, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    calls = []
    real = ops.reorth_step
    monkeypatch.setattr(ops, "reorth_step", lambda *a: calls.append(1) or real(*a))
    lam32 = lam.float()
    assert lanczos_module.blas_passes_faster(z.float())  # where partial takes BLAS
    x = fl.inv_sqrt_apply(lambda V: V * lam32, z.float(), 300, reorth="full")
    assert len(calls) == 300  # the compiled step ran at every step
    ref = lam.rsqrt() * z
    err = ((x.double() - ref).norm() / ref.norm()).item()
    assert err <= 2e-6, err


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reorth_step_zero_residual(device, dtype):
    """beta == 0 (w already in span(V)): the next basis row is zeros, not NaN."""
    _need(device)
    basis, w = make_step(3, 4, 500, 1, dtype, device)
    w[1] = 0.0
    b1, w1 = basis.clone(), w.clone()
    alpha, beta = ops.reorth_step(b1, w1, 1)
    assert beta[1] == 0 and alpha[1] == 0
    assert torch.equal(b1[1, 2], torch.zeros_like(b1[1, 2]))
    assert (beta[[0, 2]] > 0).all() and b1.isfinite().all()
    assert torch.equal(b1[:, 3], basis[:, 3])  # rows past j + 1 are untouched


@pytest.mark.parametrize("device", DEVICES)
def test_reorth_step_rejects_bad_input(device):
    _need(device)
    basis, w = make_step(2, 4, 100, 1, torch.float64, device)
    with pytest.raises(RuntimeError, match="j = 4"):
        ops.reorth_step(basis, w, 4)
    with pytest.raises(RuntimeError, match="basis is Float but w is Double"):
        ops.reorth_step(basis.float(), w, 1)
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.reorth_step(basis, w.t().contiguous().t(), 1)


# ---------------------------------------------------------------- registration


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    _need(device)
    a, b = random_tridiag(3, 9, torch.Generator().manual_seed(3))
    torch.library.opcheck(torch.ops.fastlanczos.tridiag_eigh.default, (a.to(device), b.to(device)))
    for dtype in (torch.float32, torch.float64):
        basis, w = make_step(2, 5, 300, 2, dtype, device)
        torch.library.opcheck(torch.ops.fastlanczos.reorth_step.default, (basis, w, 2))


def test_every_op_has_a_cuda_kernel():
    """In a CUDA build every op must have a CUDA kernel (checked in CI without a GPU)."""
    if not ops.built_with_cuda():
        pytest.skip("CPU-only build of fastlanczos._C")
    for op in ("tridiag_eigh", "reorth_step"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastlanczos::{op}", "CUDA"), op
    assert ops.supports("cuda")
    built = torch.ops.fastlanczos.cuda_version()
    assert f"{built // 1000}.{built % 1000 // 10}" == ".".join(torch.version.cuda.split(".")[:2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
def test_cuda_ops_do_not_synchronize():
    """The Lanczos loop relies on both ops queueing work without a host round-trip."""
    _need("cuda")
    basis, w = make_step(2, 6, 5000, 2, torch.float32, "cuda")
    a, b = random_tridiag(4, 20, torch.Generator().manual_seed(4))
    a, b = a.cuda(), b.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ops.reorth_step(basis, w, 2)
        ops.tridiag_eigh(a, b)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
