"""Scores of predictions: AUROC against scikit-learn (ties included), entropy, the scores."""

import importlib.util

import pytest
import torch

from fastlanczos.laplace.metrics import auroc, classification_scores, predictive_entropy

needs_sklearn = pytest.mark.skipif(not importlib.util.find_spec("sklearn"),
                                   reason="scikit-learn is not installed")


@needs_sklearn
@pytest.mark.parametrize("ties", [False, True])
def test_auroc_matches_sklearn(ties):
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    neg = torch.randn(57, generator=g)
    pos = torch.randn(43, generator=g) + 0.7
    if ties:  # coarse scores: many ties within and across the groups
        neg, pos = neg.round(), pos.round()
    labels = torch.cat([torch.zeros(57), torch.ones(43)])
    want = roc_auc_score(labels.numpy(), torch.cat([neg, pos]).numpy())
    assert auroc(neg, pos) == pytest.approx(want, abs=1e-12)
    assert auroc(pos, neg) == pytest.approx(1 - want, abs=1e-12)


def test_auroc_extremes_and_errors():
    assert auroc(torch.zeros(3), torch.ones(4)) == 1.0
    assert auroc(torch.ones(3), torch.ones(4)) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        auroc(torch.zeros(0), torch.ones(2))
    with pytest.raises(ValueError, match="finite"):
        auroc(torch.tensor([float("nan")]), torch.ones(2))


def test_entropy_and_scores():
    probs = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    torch.testing.assert_close(predictive_entropy(probs),
                               torch.tensor([0.0, torch.log(torch.tensor(3.0)).item()],
                                            dtype=torch.float64))
    s = classification_scores(probs, torch.tensor([0, 0]))  # the uniform row: argmax 0
    assert s["accuracy"] == 1.0
    assert s["nll"] == pytest.approx(torch.log(torch.tensor(3.0)).item() / 2)
