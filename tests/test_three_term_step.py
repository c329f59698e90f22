"""The plain Lanczos update of reorth="partial" (``three_term_step``, two passes over w) and
the masked step's given beta: the torch reference against the formula in float64, the
compiled kernels against the float64 formula and the reference, the errors, and the partial
recurrence with the kernels against the same recurrence in plain torch."""

import pytest
import torch
from test_partial_reorth import DEVICES, NO_EXT, make_step

from fastlanczos import ops
from fastlanczos.krylov.lanczos import run_lanczos
from fastlanczos.krylov.reorth import masked_cgs_step_torch, three_term_step_scaled_torch

SHAPES = [(5, 8, 4097, 5), (3, 4, 20001, 0), (1, 3, 7, 2), (8, 40, 65536 + 33, 39)]


def formula(basis, w, beta_prev, scale, j):
    """The update written out in float64: (w after, alpha, beta, ||c w||)."""
    B, x = basis.double(), w.double() * scale.unsqueeze(1)
    wnorm = torch.linalg.vector_norm(x, dim=1)
    if j:
        x = x - beta_prev.unsqueeze(1) * B[:, j - 1]
    alpha = (B[:, j] * x).sum(1)
    x = x - alpha.unsqueeze(1) * B[:, j]
    return x, alpha, torch.linalg.vector_norm(x, dim=1), wnorm


def inputs(k, m, n, j, dtype, device):
    basis, w = make_step(k, m, n, j, dtype, device, seed=n % 97)
    gen = torch.Generator().manual_seed(j)
    beta_prev = torch.rand(k, generator=gen, dtype=torch.float64).to(device) + 0.5
    # powers of two, as the tracker's scale c always is: 1 (ordinary operators) and others
    scale = (2.0 ** torch.tensor([(0, -3, 5)[c % 3] for c in range(k)],
                                 dtype=torch.float64)).to(device)
    return basis, w, beta_prev, scale


def _tol(dtype):
    return dict(rtol=3e-6, atol=3e-6) if dtype == torch.float32 else dict(rtol=1e-12,
                                                                          atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k,m,n,j", SHAPES[:3])
def test_torch_reference_is_the_formula(dtype, k, m, n, j):
    basis, w, beta_prev, scale = inputs(k, m, n, j, dtype, "cpu")
    x = w.clone()
    alpha, beta, wnorm = three_term_step_scaled_torch(basis, x, beta_prev, scale, j)
    ref = formula(basis, w, beta_prev, scale, j)
    for got, want in zip((x.double(), alpha, beta, wnorm), ref):
        torch.testing.assert_close(got, want, **_tol(dtype))


@NO_EXT
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k,m,n,j", SHAPES)
def test_compiled_step_matches_formula_and_torch(device, dtype, k, m, n, j):
    if not ops.supports(device):
        pytest.skip(f"no {device} kernels in this build")
    basis, w, beta_prev, scale = inputs(k, m, n, j, dtype, device)
    before = basis.clone()
    x1, x2 = w.clone(), w.clone()
    got = ops.three_term_step(basis, x1, beta_prev, scale, j)
    torch_ = three_term_step_scaled_torch(basis, x2, beta_prev, scale, j)
    ref = formula(basis, w, beta_prev, scale, j)
    for a, b, c in zip((x1, *got), (x2, *torch_), ref):
        torch.testing.assert_close(a.double(), c, **_tol(dtype))  # float64 formula
        torch.testing.assert_close(a.double(), b.double(), **_tol(dtype))  # torch path
    assert torch.equal(basis, before)  # reads the basis, never writes it
    assert all(t.dtype == torch.float64 and t.shape == (k,) for t in got)


@NO_EXT
def test_compiled_step_is_deterministic_across_threads():
    """Chunk boundaries depend on n only: 1 and 2 threads give the same bits."""
    basis, w, beta_prev, scale = inputs(4, 6, 300001, 3, torch.float32, "cpu")
    outs = []
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            x = w.clone()
            outs.append((x, *ops.three_term_step(basis, x, beta_prev, scale, 3)))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*outs))


@NO_EXT
def test_compiled_step_checks_and_opcheck():
    basis, w, beta_prev, scale = inputs(2, 5, 50, 2, torch.float64, "cpu")
    with pytest.raises(RuntimeError, match="beta_prev and scale must be \\(k,\\)"):
        ops.three_term_step(basis, w, beta_prev[:1], scale, 2)
    with pytest.raises(RuntimeError, match="float64"):
        ops.three_term_step(basis, w, beta_prev, scale.float(), 2)
    with pytest.raises(RuntimeError, match="outside"):
        ops.three_term_step(basis, w, beta_prev, scale, 5)
    with pytest.raises(RuntimeError, match="does not match"):
        ops.three_term_step(basis, w[:, :49].contiguous(), beta_prev, scale, 2)
    torch.library.opcheck(torch.ops.fastlanczos.three_term_step.default,
                          (basis, w, beta_prev, scale, 2))


@pytest.mark.parametrize("step", ["torch", "compiled"])
def test_masked_step_takes_the_given_beta_for_columns_without_passes(step):
    if step == "compiled" and not ops.available():
        pytest.skip("fastlanczos._C is not built")
    fn = ops.reorth_step_masked if step == "compiled" else masked_cgs_step_torch
    k, m, n, j = 4, 6, 3001, 3
    basis, w = make_step(k, m, n, j, torch.float64, "cpu")
    passes = torch.tensor([0, 1, 2, 0], dtype=torch.uint8)
    given = torch.linalg.vector_norm(w, dim=1) * (1 + 1e-9)  # distinguishable from a norm
    b1, x1 = basis.clone(), w.clone()
    h1, beta1 = fn(b1, x1, passes, j, given)
    b2, x2 = basis.clone(), w.clone()
    h2, beta2 = fn(b2, x2, passes, j)
    assert torch.equal(beta1[passes == 0], given[passes == 0])
    assert torch.equal(beta1[passes > 0], beta2[passes > 0])
    assert torch.equal(h1, h2) and torch.equal(x1, x2)
    torch.testing.assert_close(b1[:, j + 1], x1 / given.unsqueeze(1) * (passes == 0)
                               .unsqueeze(1) + b2[:, j + 1] * (passes > 0).unsqueeze(1))
    if step == "compiled":
        with pytest.raises(RuntimeError, match="beta must be float64"):
            fn(basis.clone(), w.clone(), passes, j, given.float())
        torch.library.opcheck(torch.ops.fastlanczos.reorth_step_masked.default,
                              (basis, w, passes, j, given))


@NO_EXT
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_partial_recurrence_with_kernels_matches_plain_torch(dtype, monkeypatch):
    """The whole partial run: same T (to rounding), same reorthogonalized steps, and a
    column stopped by breakdown gets zero rows from then on in both."""
    n = 3000
    # no isolated eigenvalues: there a converged Ritz pair makes the later alpha sensitive to
    # rounding (full reorthogonalization on two backends differs by 4e-3 there). In float32
    # this run reorthogonalizes a few steps, in float64 none.
    evals = torch.logspace(-6, 0, n, dtype=torch.float64)
    Q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64,
                                    generator=torch.Generator().manual_seed(1)))[0]
    A = ((Q * evals) @ Q.T).to(dtype)
    z = torch.randn(3, n, dtype=dtype, generator=torch.Generator().manual_seed(3))
    z[2] = Q[:, -1].to(dtype)  # an eigenvector (of the largest): breaks down at once
    runs = {}
    for backend in ("extension", "torch"):
        monkeypatch.setenv("FASTLANCZOS_BACKEND", "" if backend == "extension" else "torch")
        res, t = run_lanczos(lambda V: V @ A, z, 60, "partial")
        runs[backend] = res, t.reorth_count
    (r1, c1), (r2, c2) = runs["extension"], runs["torch"]
    assert torch.equal(r1.steps, r2.steps) and int(r1.steps[2]) == 1
    assert ((c1 - c2).abs() <= 2).all()  # thresholds see rounding
    assert (c1[:2] > 0).all() == (dtype == torch.float32)
    tol = dict(rtol=2e-5, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-12, atol=0)
    for c in range(2):
        s = int(r1.steps[c])
        torch.testing.assert_close(r1.alpha[c, :s], r2.alpha[c, :s], **tol)
        torch.testing.assert_close(r1.beta[c, : s - 1], r2.beta[c, : s - 1], **tol)
    assert (r1.basis[2, 1:] == 0).all() and (r2.basis[2, 1:] == 0).all()
