"""tridiag_eigh on hard inputs: graded matrices in either direction, extreme scales, glued
Wilkinson matrices, clustered eigenvalues and tiny off-diagonals, on the compiled CPU kernel,
the GPU kernel's program run on the CPU (SERIAL_TEAM, see test_ops.py) and the torch path.

Every result is judged by LAPACK's own test ratios (TESTING/EIG: dstt21 for the first two,
dchkst for the eigenvalues), which a backward stable solver keeps O(1) on any input:
    residual       ||T S - S Theta||_1 / (||T||_1 m ulp)
    orthogonality  ||S^T S - I||_1 / (m ulp)
    eigenvalues    max_i |theta_i - ref_i| / (||T||_1 m ulp),  ref from scipy (LAPACK)
each below THRESH = 50, the threshold of LAPACK's TESTING/sep.in (raised to 60 in recent
releases), the same for every path.

Hypothesis profiles (tests/conftest.py): "ci", the default, runs a few dozen reproducible
examples per target; HYPOTHESIS_PROFILE=long runs a thousand.
"""

import contextlib
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_ops import SERIAL_TEAM, _need, glued_wilkinson, tridiag_eigh_on

import fastlanczos

scipy_linalg = pytest.importorskip("scipy.linalg")

ULP = float(np.finfo(np.float64).eps)  # dlamch('Epsilon') * base, as in dstt21
THRESH = 50.0
TORCH = "torch-path"  # fastlanczos.tridiag_eigh with FASTLANCZOS_BACKEND=torch
TARGETS = ["cpu", SERIAL_TEAM, TORCH]


@contextlib.contextmanager
def _torch_backend():
    # Not monkeypatch: hypothesis runs many examples inside one function-scoped fixture.
    before = os.environ.get("FASTLANCZOS_BACKEND")
    os.environ["FASTLANCZOS_BACKEND"] = "torch"
    try:
        yield
    finally:
        if before is None:
            del os.environ["FASTLANCZOS_BACKEND"]
        else:
            os.environ["FASTLANCZOS_BACKEND"] = before


def _need_target(target):
    if target != TORCH:
        _need(target)


def solve(target, d, e):
    """theta (m,), S (m, m) as numpy arrays for the tridiagonal (d, e)."""
    a, b = torch.from_numpy(d)[None], torch.from_numpy(e)[None]
    if target == TORCH:
        with _torch_backend():
            theta, S = fastlanczos.tridiag_eigh(a, b)
    else:
        theta, S = tridiag_eigh_on(target, a, b)
    return theta[0].cpu().numpy(), S[0].cpu().numpy()


def lapack_ratios(d, e, theta, S):
    """(residual, orthogonality, eigenvalue) test ratios, as defined in the module docstring."""
    m = d.size
    T = np.diag(d)
    if m > 1:
        T += np.diag(e, 1) + np.diag(e, -1)
    norm = max(np.abs(T).sum(0).max(), np.finfo(np.float64).tiny)  # dstt21: max(anorm, unfl)
    ref = scipy_linalg.eigh_tridiagonal(d, e, eigvals_only=True)
    resid = np.abs(T @ S - S * theta).sum(0).max() / norm / (m * ULP)
    orth = np.abs(S.T @ S - np.eye(m)).sum(0).max() / (m * ULP)
    evals = np.abs(theta - ref).max() / norm / (m * ULP)
    return resid, orth, evals


def check(target, d, e, what=""):
    theta, S = solve(target, d, e)
    assert np.isfinite(theta).all() and np.isfinite(S).all(), f"{what}: did not converge"
    assert (np.diff(theta) >= 0).all(), f"{what}: eigenvalues not ascending"
    resid, orth, evals = lapack_ratios(d, e, theta, S)
    assert max(resid, orth, evals) < THRESH, (
        f"{what}: residual {resid:.3g}, orthogonality {orth:.3g}, eigenvalues {evals:.3g}")


# ---------------------------------------------------------------- deterministic cases


def graded(m, base, flip):
    """d_i = base^-i, e_i = base^-(i + 1/2): every leading 2x2 block is singular, which holds
    the Wilkinson shift at ~0; the tail underflows (to subnormals, or to zero for base 10)."""
    i = np.arange(m, dtype=np.float64)
    d, e = base**-i, base ** -(i[:-1] + 0.5)
    return (d[::-1].copy(), e[::-1].copy()) if flip else (d, e)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("flip", [False, True], ids=["down", "up"])
@pytest.mark.parametrize("base", [2.0, 10.0])
@pytest.mark.parametrize("m", [48, 64, 128])
def test_graded(target, m, base, flip):
    _need_target(target)
    check(target, *graded(m, base, flip), f"graded base {base} m {m}")


@pytest.mark.parametrize(
    "m,base,flip",
    [(512, 2.0, False), (512, 2.0, True), (512, 10.0, False), (512, 10.0, True),
     (1024, 2.0, False)],
)
def test_graded_large_on_gpu_program(m, base, flip):
    """The sizes only the GPU kernel takes (up to 1024), run by its program on the CPU."""
    _need(SERIAL_TEAM)
    check(SERIAL_TEAM, *graded(m, base, flip), f"graded base {base} m {m}")


def w21():
    a, b = glued_wilkinson(1, 21)
    return a[0].numpy(), b[0].numpy()


def random_tridiagonal(m, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(m), rng.standard_normal(m - 1)


SCALES = {"2^-1000": 2.0**-1000, "2^-996": 2.0**-996, "2^+1000": 2.0**1000,
          "1e-300": 1e-300, "1e+300": 1e300}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize("matrix", ["w21", "random"])
def test_extreme_scales(target, scale, matrix):
    """Near the ends of the exponent range the squares in QL over- or underflow unless each
    block is scaled first; W21 at 2^-996 lost orthogonality (|S^T S - I| ~ 8e-2) that way."""
    _need_target(target)
    d, e = w21() if matrix == "w21" else random_tridiagonal(40, seed=5)
    check(target, d * SCALES[scale], e * SCALES[scale], f"{matrix} * {scale}")


# ---------------------------------------------------------------- properties


KINDS = ["random", "graded", "glued_wilkinson", "clustered", "tiny_offdiagonals"]


@st.composite
def hard_tridiagonals(draw, max_m=64):
    """(description, d, e): a matrix of one of KINDS, scaled by 2^k, k in [-1000, 1000]. The
    structure is drawn by hypothesis, the bulk of the entries from a seeded generator."""
    kind = draw(st.sampled_from(KINDS))
    m = draw(st.integers(1, max_m))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "random":
        d, e = rng.standard_normal(m), rng.standard_normal(m - 1)
    elif kind == "graded":
        base, flip, exact = draw(st.floats(1.5, 10.0)), draw(st.booleans()), draw(st.booleans())
        d, e = graded(m, base, flip=False)
        if not exact:  # else the singular leading 2x2 blocks of graded()
            d = d * rng.uniform(0.5, 1.5, m) * rng.choice([-1.0, 1.0], m)
            e = e * rng.uniform(0.5, 1.5, m - 1)
        if flip:
            d, e = d[::-1].copy(), e[::-1].copy()
        kind += f" base {base:.3g}" + (" up" if flip else " down") + (" exact" if exact else "")
    elif kind == "glued_wilkinson":
        glue = 10.0 ** draw(st.floats(-15.0, -1.0))
        a, b = glued_wilkinson(1, m, glue)
        d, e = a[0].numpy(), b[0].numpy()
        kind += f" glue {glue:.3g}"
    elif kind == "clustered":
        clusters, spread = draw(st.integers(1, 4)), 10.0 ** -draw(st.floats(4.0, 14.0))
        lam = rng.standard_normal(clusters)[rng.integers(0, clusters, m)]
        lam = lam + spread * rng.standard_normal(m)
        Q = np.linalg.qr(rng.standard_normal((m, m)))[0]
        H = scipy_linalg.hessenberg((Q * lam) @ Q.T)  # tridiagonal, up to rounding
        d, e = np.diag(H).copy(), np.diag(H, -1).copy()
        kind += f" {clusters} clusters of width {spread:.3g}"
    else:
        d, e = rng.standard_normal(m), rng.standard_normal(m - 1)
        tiny = rng.random(m - 1) < draw(st.floats(0.1, 1.0))
        e[tiny] *= 10.0 ** -rng.uniform(12.0, 300.0, int(tiny.sum()))
    # Two draws in three near the ends of the range, where squares over- or underflow.
    k = draw(st.one_of(st.integers(-1000, 1000), st.integers(-1000, -900), st.integers(900, 1000)))
    return f"{kind}, m {m}, * 2^{k}", d * 2.0**k, e * 2.0**k


@pytest.mark.parametrize("target", TARGETS)
@given(case=hard_tridiagonals())
def test_hard_tridiagonals(target, case):
    _need_target(target)
    what, d, e = case
    check(target, d, e, what)
