"""Shared fixtures: devices (CUDA cases skipped visibly without a GPU) and SPD matrices with
prescribed spectra, the float64 references everything is tested against."""

import os

import pytest
import torch

try:  # property tests: short and reproducible in CI; HYPOTHESIS_PROFILE=long for a search
    from hypothesis import settings

    settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                              print_blob=True)
    settings.register_profile("long", max_examples=1000, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # the CUDA build check runs one kernel test in a venv without it
    pass

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device")),
]


@pytest.fixture(autouse=True)
def _backend_choice_stays_put():
    """CI runs the suite twice, once with FASTLANCZOS_BACKEND=torch: a test that changed the
    variable and left it would silently turn the rest of that run back to the extension."""
    before = os.environ.get("FASTLANCZOS_BACKEND")
    yield
    assert os.environ.get("FASTLANCZOS_BACKEND") == before, "FASTLANCZOS_BACKEND was left changed"


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def spd_from_spectrum(evals, seed=0):
    """A = Q diag(evals) Q^T (float64) with a random orthogonal Q, and Q."""
    evals = torch.as_tensor(evals, dtype=torch.float64)
    n = evals.numel()
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (Q * evals) @ Q.T, Q


def dense_funm(A, z, fn):
    """f(A) z in float64 by eigh of A (z of shape (n,) or (k, n))."""
    evals, Q = torch.linalg.eigh(A.double())
    z2 = z.double().reshape(-1, z.shape[-1])
    return (Q @ (fn(evals).unsqueeze(1) * (Q.T @ z2.T))).T.reshape(z.shape)


def rel_err(x, ref):
    x, ref = x.double().reshape(-1, ref.shape[-1]), ref.double().reshape(-1, ref.shape[-1])
    return (torch.linalg.vector_norm(x - ref, dim=1) / torch.linalg.vector_norm(ref, dim=1)).max()


def textbook_lanczos_fa(A, z, m, fn):
    """Textbook Lanczos-FA in float64 numpy-style loops, full reorthogonalization (two
    Gram-Schmidt passes, one vector at a time), f(T) by dense eigh: the accuracy yardstick."""
    A, z = A.double(), z.double()
    n = z.numel()
    V = torch.zeros(m, n, dtype=torch.float64)
    a = torch.zeros(m, dtype=torch.float64)
    b = torch.zeros(m, dtype=torch.float64)
    V[0] = z / z.norm()
    size = m
    for j in range(m):
        w = A @ V[j]
        for _ in range(2):
            w = w - V[: j + 1].T @ (V[: j + 1] @ w)
        a[j] = V[j] @ (A @ V[j])
        b[j] = w.norm()
        if j + 1 < m:
            if b[j] < 1e-14 * a[: j + 1].abs().max():
                size = j + 1
                break
            V[j + 1] = w / b[j]
    T = torch.diag(a[:size]) + torch.diag(b[: size - 1], 1) + torch.diag(b[: size - 1], -1)
    th, S = torch.linalg.eigh(T)
    return z.norm() * V[:size].T @ (S @ (fn(th) * S[0]))


# f names -> the torch function for dense_funm (error_curve's reference)
DENSE_FNS = {"inv_sqrt": torch.rsqrt, "sqrt": torch.sqrt, "inv": torch.reciprocal,
             "exp": torch.exp, "log": torch.log}


def error_curve(A, z, f, m, shift=0.0, ref=None):
    """((k, m) relative error of the j-step iterate for every j <= m, f(A + shift I) z): one
    Lanczos basis in z's dtype, x_j = ||z|| V_j f(T_j) e_1, against a float64 eigh reference
    (or the given ref) (the oracle m of the tolerance stop is the first j whose error meets
    tol; the same iterates as fixed-m runs)."""
    import fastlanczos as fl
    from fastlanczos.krylov.matfuncs import resolve
    fn = resolve(f)[1]
    r = fl.lanczos(A, z, m, shift=shift)
    if ref is None:
        eye = torch.eye(A.shape[0], dtype=torch.float64, device=A.device)
        ref = dense_funm(A.double() + shift * eye, z, DENSE_FNS[f])
    errs = []
    for j in range(1, m + 1):
        theta, S = fl.tridiag_eigh(r.alpha[:, :j], r.beta[:, : j - 1])
        y = (S * (fn(theta) * S[:, 0, :]).unsqueeze(1)).sum(-1)
        coeffs = (y * z.double().norm(dim=1, keepdim=True)).to(r.basis.dtype)
        x = torch.einsum("kj,kjn->kn", coeffs, r.basis[:, :j]).double()
        errs.append((x - ref).norm(dim=1) / ref.norm(dim=1))
    return torch.stack(errs, 1), ref


@pytest.fixture
def one_thread():
    """torch on one CPU thread for the test, where routing depends on it (BLAS vs kernels)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
