"""benchmarks/gpu_check.py runs end to end at tiny sizes (--smoke), so the script a GPU
session runs once, in a few minutes of lent device time, has already run here."""

import sys
from pathlib import Path

import pytest

import fastlanczos as fl

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))


@pytest.mark.skipif(not fl.ops.available(), reason="extension not built: no kernels to time")
def test_gpu_check_smoke_run_completes(tmp_path):
    import gpu_check

    sections = gpu_check.main(["--smoke", "--out", str(tmp_path)])
    failed = [(title, text) for title, text in sections if "FAILED" in text]
    assert not failed, failed
    written = (tmp_path / "RESULTS-gpu.md").read_text()
    for needle in ("tridiag_eigh on", "reorth_step (fused CGS2)", "MLP GGN 784-8",
                   "0 host reads counted", "GGN cached Jacobians", "memory_budget",
                   "predictive glm/probit", "reorth_step_masked", "three_term_step",
                   "keeps the given beta: True",
                   "tolerance stop", "bound stop", "also with eig_lower_bound",
                   "derived bound: float32 ggn_vp closure", "with a bound derived from shift"):
        assert needle in written, needle
