"""reorth="partial": Simon's omega recurrence decides, per column and on the device, when to
reorthogonalize. Checked here: the fused masked step against its torch reference (mixed
columns: 0, 1 and 2 Gram-Schmidt passes in one batch), the orthogonality level the method
promises, f(A) z accuracy at equal m against full reorthogonalization and a float64 dense
eigh reference, and per-column independence of the masks."""

import functools

import pytest
import torch
from conftest import rel_err
from conftest import spd_from_spectrum as _spd_from_spectrum

import fastlanczos as fl
from fastlanczos import ops
from fastlanczos.krylov import reorth
from fastlanczos.krylov.lanczos import run_lanczos
from fastlanczos.krylov.reorth import cgs2_step_torch, masked_cgs_step_torch

NO_EXT = pytest.mark.skipif(not ops.available(), reason="fastlanczos._C is not built")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here"))]


@functools.cache
def _cached_spd(key, seed):
    return _spd_from_spectrum(torch.tensor(key, dtype=torch.float64), seed)


def spd_from_spectrum(evals, seed=0):
    """conftest's, cached: the 800 x 800 QR and product are most of these tests' time."""
    return _cached_spd(tuple(evals.double().tolist()), seed)


def make_step(k, m, n, j, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(k, m, n, generator=gen, dtype=torch.float64)
    basis[:, : j + 1] = torch.linalg.qr(basis[:, : j + 1].transpose(1, 2))[0].transpose(1, 2)
    w = torch.randn(k, n, generator=gen, dtype=torch.float64) + 0.5 * basis[:, j]
    return basis.to(dtype=dtype, device=device), w.to(dtype=dtype, device=device)


def _masked(step, basis, w, passes, j):
    b, x = basis.clone(), w.clone()
    h, beta = step(b, x, passes, j)
    return b, x, h, beta


@pytest.mark.parametrize("branch", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_masked_step_is_cgs_per_column(monkeypatch, dtype, branch):
    """The reference itself: 2 passes = the CGS2 step, 0 = w untouched; both code paths
    (host branch on the CPU, masked arithmetic elsewhere) agree."""
    monkeypatch.setattr(reorth, "branch_on_mask", lambda device: branch)
    k, m, n, j = 4, 10, 3000, 6
    basis, w = make_step(k, m, n, j, dtype, "cpu")
    passes = torch.tensor([2, 0, 1, 2], dtype=torch.uint8)
    b, x, h, beta = _masked(masked_cgs_step_torch, basis, w, passes, j)
    b2, x2 = basis.clone(), w.clone()
    a2, beta2 = cgs2_step_torch(b2, x2, j)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    for c in (0, 3):
        torch.testing.assert_close(x[c], x2[c], **tol)
        torch.testing.assert_close(h[c], a2[c], **tol)
    assert torch.equal(x[1], w[1]) and h[1] == 0
    torch.testing.assert_close(beta[1], torch.linalg.vector_norm(w[1].double()), **tol)
    # one pass: w - V^T V w, so its overlaps are at most rounding times the removed ones
    V = basis[2, : j + 1].double()
    one = w[2].double() - V.T @ (V @ w[2].double())
    torch.testing.assert_close(x[2].double(), one, **(tol or dict(rtol=1e-12, atol=1e-12)))
    torch.testing.assert_close(b[:, j + 1].double(), (x / beta.unsqueeze(1)).double(), **tol)


@NO_EXT
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k,m,n,j", [(5, 8, 4097, 5), (3, 40, 20001, 39), (8, 3, 100, 0)])
def test_compiled_masked_step_matches_torch(device, dtype, k, m, n, j):
    if not ops.supports(device):
        pytest.skip(f"no {device} kernels in this build")
    basis, w = make_step(k, m, n, j, dtype, device, seed=k)
    passes = torch.tensor([(2, 0, 1)[c % 3] for c in range(k)], dtype=torch.uint8,
                          device=device)
    b1, x1, h1, be1 = _masked(ops.reorth_step_masked, basis, w, passes, j)
    b2, x2, h2, be2 = _masked(masked_cgs_step_torch, basis.double(), w.double(), passes, j)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == torch.float32 else \
        dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h1, h2, **tol)
    torch.testing.assert_close(be1, be2, **tol)
    torch.testing.assert_close(x1.double(), x2, **tol)
    torch.testing.assert_close(b1.double(), b2, **tol)
    assert torch.equal(x1[passes == 0], w[passes == 0])  # no pass: w as it was
    if j + 1 == m:
        assert torch.equal(b1, basis)


@NO_EXT
def test_compiled_masked_step_checks_and_opcheck():
    basis, w = make_step(2, 5, 50, 2, torch.float64, "cpu")
    with pytest.raises(RuntimeError, match="passes must be"):
        ops.reorth_step_masked(basis, w, torch.ones(3, dtype=torch.uint8), 2)
    with pytest.raises(RuntimeError, match="uint8"):
        ops.reorth_step_masked(basis, w, torch.ones(2, dtype=torch.int64), 2)
    torch.library.opcheck(torch.ops.fastlanczos.reorth_step_masked.default,
                          (basis, w, torch.tensor([1, 2], dtype=torch.uint8), 2))


def _overlap(V):
    """max |V V^T - I| over the rows a column built (a column that broke down stops)."""
    V = V.double()
    return float((V @ V.T - torch.eye(V.shape[0], dtype=torch.float64)).abs().amax())


def _spectra():
    return {"log-1e-4": torch.logspace(-4, 0, 800), "clustered": torch.cat(
        [torch.linspace(1, 1.01, 740), torch.linspace(2, 50, 60)]),
        "linear": torch.linspace(1, 100, 800)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["log-1e-4", "clustered"])  # where plain Lanczos loses it
def test_orthogonality_stays_semi_orthogonal(name, dtype):
    """The method's promise: max_{i != l} |v_i . v_l| stays at sqrt(eps) scale (tested:
    <= 10 sqrt(eps)) while reorthogonalizing at fewer than all steps; without
    reorthogonalization the same run loses it (so the bound is not vacuous here)."""
    A, _ = spd_from_spectrum(_spectra()[name].double(), seed=0)
    A = A.to(dtype)
    z = torch.randn(3, A.shape[0], dtype=dtype, generator=torch.Generator().manual_seed(2))
    m, eps = 100, torch.finfo(dtype).eps
    gram = {}
    for mode in ("partial", "none"):
        res, t = run_lanczos(lambda V: V @ A, z, m, mode) if mode == "partial" else \
            (fl.lanczos(A, z, m, reorth="none"), None)
        gram[mode] = max(_overlap(res.basis[c, : int(res.steps[c])]) for c in range(3))
        if t is not None:
            count = t.reorth_count
    assert gram["partial"] <= 10 * eps**0.5, (gram, count)
    assert gram["none"] > 10 * eps**0.5
    assert (count < m).all() and (count > 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(_spectra()))
@pytest.mark.parametrize("f", ["inv_sqrt", "exp"])
def test_accuracy_within_twice_full(name, dtype, f):
    """f(A) z at equal m: partial's error against the float64 dense reference is at most
    twice full's (plus a rounding floor)."""
    spec = _spectra()[name].double()
    if f == "exp":
        spec = spec / spec.max()
    A, Q = spd_from_spectrum(spec, seed=3)
    lam = spec
    z = torch.randn(4, A.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    fn = {"inv_sqrt": torch.rsqrt, "exp": torch.exp}[f]
    ref = ((Q * fn(lam)) @ Q.T @ z.T).T
    err = {}
    for mode in ("full", "partial"):
        x = fl.funm_apply(A.to(dtype), z.to(dtype), f, 60, reorth=mode)
        err[mode] = rel_err(x.double(), ref)
    floor = 50 * torch.finfo(dtype).eps
    assert err["partial"] <= 2 * err["full"] + floor, err


def test_columns_decide_independently():
    """Columns with different spectra reorthogonalize at different steps; each column's
    result is that of its own single-column run."""
    A, _ = spd_from_spectrum(torch.logspace(-4, 0, 800, dtype=torch.float64), seed=5)
    gen = torch.Generator().manual_seed(6)
    z = torch.randn(3, 800, dtype=torch.float64, generator=gen)
    z[1] = torch.linspace(-1, 1, 800, dtype=torch.float64) ** 9  # a very different start
    res, t = run_lanczos(lambda V: V @ A, z, 90, "partial")
    for c in range(3):
        one, t1 = run_lanczos(lambda V: V @ A, z[c : c + 1], 90, "partial")
        torch.testing.assert_close(res.alpha[c], one.alpha[0], rtol=1e-9, atol=1e-12)
        assert t.reorth_count[c] == t1.reorth_count[0]


def test_blas_passes_keep_the_promises(one_thread, monkeypatch):
    """float32 on one CPU thread at n >= 1e5 runs partial's passes as per-column BLAS
    products (lanczos.blas_passes_faster), whose dots accumulate in float32: the basis stays
    semi-orthogonal (where the plain recurrence loses it) and f(A) z within twice full's
    error (a diagonal operator, n = 1e5, a cluster at 1 and 60 eigenvalues 2..50 as in
    _spectra, against the exact f(lam) z in float64)."""
    from fastlanczos.krylov import lanczos as lanczos_module
    n, m = 100_000, 100
    lam = torch.cat([torch.linspace(1, 1.01, n - 60, dtype=torch.float64),
                     torch.linspace(2, 50, 60, dtype=torch.float64)])
    z = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    assert lanczos_module.blas_passes_faster(z.float())
    assert not lanczos_module.blas_passes_faster(z)  # float64 keeps the kernel
    calls = []
    monkeypatch.setattr(lanczos_module, "masked_cgs_step_torch",
                        lambda *a: calls.append(1) or masked_cgs_step_torch(*a))
    lam32 = lam.float()
    res, t = run_lanczos(lambda V: V * lam32, z.float(), m, "partial")
    assert len(calls) == m  # the branch under test ran
    eps = torch.finfo(torch.float32).eps
    gram = max(_overlap(res.basis[c, : int(res.steps[c])]) for c in range(3))
    assert gram <= 10 * eps**0.5, gram
    plain = fl.lanczos(lambda V: V * lam32, z.float(), m, reorth="none").basis
    assert _overlap(plain[0]) > 10 * eps**0.5
    assert (t.reorth_count < m).all() and (t.reorth_count > 0).all()
    ref = lam.rsqrt() * z
    err = {mode: rel_err(fl.inv_sqrt_apply(lambda V: V * lam32, z.float(), 60,
                                           reorth=mode).double(), ref)
           for mode in ("full", "partial")}
    assert err["partial"] <= 2 * err["full"] + 50 * eps, err
