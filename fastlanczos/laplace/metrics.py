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


def predictive_entropy(probs):
    """(B,) entropy of each row of class probabilities (nats); 0 * log 0 taken as 0."""
    p = probs.double()
    return -(p * p.clamp_min(1e-300).log()).sum(-1)


def auroc(negative, positive):
    """Area under the ROC curve of scores separating `positive` from `negative` (e.g. the
    predictive entropy of out- vs in-distribution inputs): P(score_pos > score_neg) + 1/2
    P(equal), by the rank statistic (Mann-Whitney U) with tied scores given their mean rank."""
    neg, pos = negative.double().flatten().cpu(), positive.double().flatten().cpu()
    if neg.numel() == 0 or pos.numel() == 0:
        raise ValueError("auroc needs at least one score of each kind")
    scores = torch.cat([neg, pos])
    if not torch.isfinite(scores).all():
        raise ValueError("auroc: scores must be finite")
    order = scores.argsort()
    values, counts = torch.unique_consecutive(scores[order], return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2  # 1-based mean rank of each tie group
    ranks = torch.empty_like(scores)
    ranks[order] = mean_rank.repeat_interleave(counts)
    n_pos, n_neg = pos.numel(), neg.numel()
    u = ranks[neg.numel():].sum().item() - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)
