"""The demo end to end in a tiny configuration (one epoch, few samples, fixed prior)."""

import importlib.util

import pytest

from fastlanczos.__main__ import main

needs_demo_extra = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("sklearn", "matplotlib")),
    reason="the demo extra (scikit-learn, matplotlib) is not installed")


@needs_demo_extra
def test_demo_runs_and_saves_reliability_diagram(tmp_path, capsys):
    out = tmp_path / "rel.png"
    code = main(["demo", "--epochs", "1", "--samples", "10", "--grid-samples", "10",
                 "--m", "20", "--probes", "6", "--sketch", "6", "--probe-steps", "8",
                 "--grid-steps", "8", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    for word in ("MAP", "Laplace", "accuracy", "NLL", "ECE", "Brier", "samples/s",
                 "block products", "prior precision", "marginal likelihood", "rotated", "AUROC"):
        assert word in text


def test_unavailable_cuda_is_a_clear_message(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["demo", "--device", "cuda"]) == 1
    assert "no CUDA device" in capsys.readouterr().out
