"""benchmarks/stopping_lab.py reproduces the rule's decisions from recorded solves: the same
stops as real funm_apply runs and as bench_stopping_sweep's replays. Its tables are only
worth reading while this holds."""

import sys
from pathlib import Path

import pytest
import torch
from conftest import spd_from_spectrum

import fastlanczos as fl

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import bench_stopping_sweep as sweep  # noqa: E402
import stopping_lab as lab  # noqa: E402

SPECTRA = {"logspace": torch.logspace(-3, 0, 300),
           "outliers": torch.cat([torch.linspace(1, 2, 296), torch.tensor([1e-2, 0.1, 10, 30.0])])}


@pytest.mark.parametrize("bounded", [False, True])
@pytest.mark.parametrize("name,f", [("logspace", "inv_sqrt"), ("logspace", "sqrt"),
                                    ("outliers", "log")])
def test_simulated_runs_stop_where_real_runs_do(name, f, bounded):
    A, _ = spd_from_spectrum(SPECTRA[name].double(), seed=4)
    k, m = 3, 200
    bound = float(SPECTRA[name].min()) * (1 - 1e-3) if bounded else None
    rec = lab.record(A, f, k=k, m=m, z_seed=5, bound=bound)
    z = torch.randn(k, A.shape[0], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(5))
    compared = 0
    for tol in (1e-2, 1e-4, 1e-6, 1e-8, 1e-10):
        _, info = fl.funm_apply(A, z, f, m, tol=tol, return_info=True, eig_lower_bound=bound)
        stop, done = lab.simulate(rec, tol, real=True, bounded=bounded)
        assert torch.equal(done, info.converged), (tol, done, info.converged)
        assert torch.equal(stop[done], info.steps[done]), (tol, stop, info.steps)
        compared += int(done.sum())
    assert compared >= 10  # most columns stopped: the comparison is not empty


def test_replays_are_the_sweeps():
    A, _ = spd_from_spectrum(SPECTRA["logspace"].double(), seed=6)
    rec = lab.record(A, "inv_sqrt", k=2, m=160, z_seed=3)
    ours = lab.stop_rows(rec, real=False)
    theirs = sweep.stops(A, "inv_sqrt", 2, 160, z_seed=3)
    assert len(ours) > 30
    assert [(r, o) for _, r, o in ours] == [(r, o) for _, r, o in theirs]
    assert [e for e, _, _ in ours] == pytest.approx([e for e, _, _ in theirs], rel=1e-6)


def test_the_issue_table_reads_the_simulated_stops():
    """stopping_lab.py issue: each cell is the simulated real run's stop against the first
    step whose iterate meets tol, flagged late after ceil(1.05 oracle) and above where the
    stop's error exceeds tol (on this logspace spectrum with its bound: none above)."""
    A, _ = spd_from_spectrum(SPECTRA["logspace"].double(), seed=4)
    rec = lab.record(A, "inv_sqrt", k=2, m=200, z_seed=5, bound=1e-3 * (1 - 1e-3))
    rows = lab.issue_rows(rec, bounded=True)
    assert sorted(rows) == [1e-9, 1e-6, 1e-3]
    for tol, cells in rows.items():
        stop, _ = lab.simulate(rec, tol, True, bounded=True)
        assert [s for s, _, _, _ in cells] == stop.tolist()
        for c, (s, oracle, late, above) in enumerate(cells):
            met = (rec["curve"][c] <= tol).nonzero()
            assert oracle == int(met[0]) + 1 and s >= oracle
            assert late == (s > -(-105 * oracle // 100)) and not above
