"""The comparison benchmarks' method wrappers compute what they claim (benchmarks/peers.py).

A wrong peer wrapper would make every table in RESULTS-cpu.md wrong, so each wrapper is
checked against float64 dense eigh on a small operator with a prescribed spectrum. Peers that
are not installed (the `bench` extra) are skipped.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import peers  # noqa: E402
import report  # noqa: E402
from conftest import spd_from_spectrum  # noqa: E402


@pytest.fixture(scope="module")
def problem():
    n = 120
    lam = torch.logspace(-2, 0, n, dtype=torch.float64)
    A, _ = spd_from_spectrum(lam, seed=3)
    op = peers.Operator("test", n, lambda V: V @ A.to(V.dtype), lambda: A)
    Z = torch.randn(3, n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    L, Q = torch.linalg.eigh(A)
    ref = ((Q * L.rsqrt()) @ (Q.T @ Z.T)).T
    return op, Z, ref


def worst(X, ref):
    return float(((X.double() - ref).norm(dim=1) / ref.norm(dim=1)).max())


def has(module):
    return importlib.util.find_spec(module) is not None


RUNS = {
    "fastlanczos": (peers.fastlanczos_run, 120, True),
    "fastlanczos torch": (lambda op, Z, m: peers.fastlanczos_run(op, Z, m, "torch"), 120, True),
    "paper loop": (peers.paper_lanczos_run, 120, True),
    "dense eigh": (peers.dense_eigh_run, None, True),
    "gpytorch CIQ": (peers.gpytorch_ciq_run, (30, 1e-10), has("linear_operator")),
    "matfree": (peers.matfree_run, 120, has("matfree") and has("jax")),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_peer_matches_dense_reference(problem, name):
    run, knob, present = RUNS[name]
    if not present:
        pytest.skip(f"{name} is not installed (the bench extra)")
    op, Z, ref = problem
    X = run(op, Z, knob)
    assert X.shape == Z.shape and X.dtype == Z.dtype
    # m = n steps (or CIQ's tightest setting): only rounding separates them from the truth;
    # the paper loop keeps orthogonality only to its orthtol, hence its looser bound.
    assert worst(X, ref) < (1e-6 if name in ("paper loop", "gpytorch CIQ") else 1e-9)


def test_fewer_steps_give_the_krylov_answer(problem):
    """At m < n the paper loop and fastlanczos build the same Krylov approximation."""
    op, Z, ref = problem
    a = peers.paper_lanczos_run(op, Z, 20)
    b = peers.fastlanczos_run(op, Z, 20)
    assert 1e-4 < worst(b, ref) < 1  # not converged, so the comparison means something
    assert worst(a, b.double()) < 1e-6


def test_counter_and_materialize(problem):
    op, _, _ = problem
    c = peers.Counter(op.block)
    A = peers.materialize(c, op.n, chunk=50)  # 120 = 50 + 50 + 20: a ragged last chunk
    assert c.calls == 3 and c.columns == op.n
    torch.testing.assert_close(A, op.dense64())


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    report.write_section(path, "a", "first A")
    report.write_section(path, "b", "first B")
    report.write_section(path, "a", "second A")
    text = path.read_text()
    assert "second A" in text and "first B" in text and "first A" not in text
    assert text.index("second A") < text.index("first B")  # a section keeps its place
