"""Data sweeps and the loss convention shared by every curvature product.

Convention: the curvature is that of the TOTAL loss L(theta) = sum_i l_i(theta) over every
example of the data set, where l_i is loss_fn applied to example i alone. A loss with
reduction="mean" returns (1/B) sum_{i in batch} l_i for a batch of B examples, so it is
multiplied by B; "sum" is used as is; "none" is summed. This makes A independent of how the
data is batched, and it is the scale on which a prior precision (weight decay) adds up:
A = curvature of L + prior_precision * I.
"""

import warnings

import torch
from torch.utils.data import DataLoader, RandomSampler

REDUCTIONS = ("mean", "sum", "none")


def loss_reduction(loss_fn, reduction=None):
    """The reduction to undo: explicit, else loss_fn.reduction, else "mean" (torch's default
    for functional losses such as torch.nn.functional.cross_entropy)."""
    r = reduction if reduction is not None else getattr(loss_fn, "reduction", "mean")
    if r not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {r!r}")
    return r


def summed_loss(loss_fn, reduction):
    """total(F, y): loss_fn on a batch of outputs F, rescaled to the sum over its examples."""
    if reduction == "mean":
        return lambda F, y: loss_fn(F, y) * F.shape[0]
    if reduction == "sum":
        return loss_fn
    return lambda F, y: loss_fn(F, y).sum()


def data_sweep(data, batch_size=None):
    """Return sweep(): a fresh iterator over the (inputs, targets) batches of one full pass.

    data: a pair of tensors (inputs, targets) with the same first dimension, chunked into
    batch_size rows (all at once when None), or a DataLoader yielding such pairs. A loader
    that shuffles is rejected: every product must see the same matrix, and a random order
    also changes rounding from product to product, which Lanczos reads as asymmetry.
    """
    if isinstance(data, DataLoader):
        _check_deterministic(data)
        return lambda: (_as_pair(b) for b in data)
    if isinstance(data, (tuple, list)):
        x, y = _as_pair(data)
        if x.shape[0] == 0:
            raise ValueError("data is empty")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        step = batch_size or x.shape[0]
        return lambda: ((x[i:i + step], y[i:i + step]) for i in range(0, x.shape[0], step))
    raise ValueError("data must be a pair of tensors (inputs, targets) or a DataLoader, got "
                     f"{type(data).__name__}")


def _as_pair(batch):
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"each batch must be a pair (inputs, targets), got a "
                         f"{type(batch).__name__}" + (f" of length {len(batch)}"
                                                      if hasattr(batch, "__len__") else ""))
    x, y = batch
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise ValueError("inputs and targets must be tensors, got "
                         f"{type(x).__name__} and {type(y).__name__}")
    if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(f"inputs and targets must share their first (example) dimension, got "
                         f"shapes {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def _check_deterministic(loader):
    samplers = [loader.sampler, getattr(loader.batch_sampler, "sampler", None)]
    if any(isinstance(s, RandomSampler) for s in samplers):
        raise ValueError("the DataLoader shuffles (RandomSampler): curvature products need the "
                         "same data in the same order on every sweep; use shuffle=False")
    if getattr(loader, "drop_last", False):
        warnings.warn("DataLoader(drop_last=True): the last partial batch is left out of the "
                      "curvature", stacklevel=3)


def move_batch(x, y, like):
    """Put a batch on the parameters' device; floating tensors take the parameters' dtype."""
    def cast(t):
        return t.to(like.device, like.dtype if t.is_floating_point() else None)
    return cast(x), cast(y)
