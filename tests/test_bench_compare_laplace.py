"""benchmarks/compare_laplace.py in its quick mode: the rows it prints are real scores.

Without laplace-torch (as in CI) only the MAP and fastlanczos rows run; with it, its diag
row (the cheap one) is checked the same way.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import compare_laplace  # noqa: E402

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("sklearn", "matplotlib")),
    reason="the demo extra (scikit-learn) is not installed")


def test_quick_comparison_scores_every_row():
    cfg = compare_laplace.parse(["--quick", "--methods", "fastlanczos", "laplace-torch diag"])
    lines = []
    rows = compare_laplace.compare(cfg, isolate=False, log=lines.append)
    has_laplace = compare_laplace.laplace_torch_missing() is None
    assert set(rows) == {"MAP", "fastlanczos"} | ({"laplace-torch diag"} if has_laplace else set())
    if not has_laplace:
        assert any("running the MAP and fastlanczos rows only" in line for line in lines)
    uniform = math.log(10)
    for name, row in rows.items():
        # 6 epochs already beat guessing on the upright digits; rotated ones are near chance
        assert 0.5 < row["accuracy"] <= 1 and row["nll"] < uniform, name
        assert 0 <= row["ece"] <= 1 and 0 <= row["auroc"] <= 1 and row["rot_nll"] > 0, name
        if name != "MAP":
            assert row["prior"] > 0 and math.isfinite(row["prior"])
            phases = row["fit_s"] + row["prior_s"] + row["predict_s"]
            assert min(row["fit_s"], row["prior_s"], row["predict_s"]) >= 0
            assert row["total_s"] == pytest.approx(phases) and row["prior_s"] > 0
    text = compare_laplace.table(rows, markdown=True)
    assert text.count("\n") == len(rows) + 1 and "| fastlanczos |" in text


def test_laplace_torch_absent_is_a_message_not_a_failure(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "laplace" else _spec(name, *a))
    assert "not installed" in compare_laplace.laplace_torch_missing()


_spec = importlib.util.find_spec
