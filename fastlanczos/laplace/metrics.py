"""Scores of predicted class probabilities against labels: how right and how calibrated."""

import torch


def reliability_bins(probs, labels, bins=15):
    """(confidence, accuracy, count) per equal-width bin of the top-class probability."""
    conf, pred = probs.max(-1)
    hit = (pred == labels).to(probs.dtype)
    idx = (conf * bins).long().clamp_max(bins - 1)
    count = torch.bincount(idx, minlength=bins).to(probs.dtype)
    safe = count.clamp_min(1)
    return (torch.bincount(idx, conf, minlength=bins) / safe,
            torch.bincount(idx, hit, minlength=bins) / safe, count)


def classification_scores(probs, labels, bins=15):
    """accuracy, NLL (mean), ECE (count-weighted |accuracy - confidence| over bins) and Brier
    score (mean over examples of the squared error summed over classes)."""
    probs, labels = probs.double().cpu(), labels.cpu()
    conf, acc, count = reliability_bins(probs, labels, bins)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[-1]).double()
    picked = probs.gather(1, labels[:, None]).squeeze(1)
    return {
        "accuracy": (probs.argmax(-1) == labels).double().mean().item(),
        "nll": -picked.clamp_min(1e-12).log().mean().item(),
        "ece": ((acc - conf).abs() * count).sum().item() / count.sum().item(),
        "brier": (probs - onehot).square().sum(-1).mean().item(),
    }
