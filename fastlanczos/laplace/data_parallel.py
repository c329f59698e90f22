"""LaplacePosterior(data_parallel=...): each rank holds its shard of the data.

The curvature and its diagonal are sums over examples, so each is the rank-local one
all-reduced (operators/distributed.py); so are the log-likelihood terms of the marginal
likelihood. Everything random that reaches a product must be the same on every rank: z is
drawn on the group's first rank and broadcast, and the other draws (sketch, Hutchinson,
quadrature probes) come from generators seeded alike on every rank. A rank with no data
contributes zero.
"""

import torch
from torch.utils.data import DataLoader

from ..operators.distributed import (
    broadcast_from_first,
    data_parallel,
    max_over_ranks,
    require_initialized,
    sum_over_ranks,
)

SEED = 20260  # the seed every rank's shared generators start from


class DataParallel:
    """The group (None: the world) and the collectives the posterior needs."""

    def __init__(self, group):
        self.group = group

    def product(self, hvp):
        return data_parallel(hvp, self.group)

    def summed(self, local):
        """A callable returning local() all-reduced (a diagonal)."""
        def total():
            d = local().clone(memory_format=torch.contiguous_format)
            torch.distributed.all_reduce(d, group=self.group)
            return d
        return total

    def same_z(self, z):
        return broadcast_from_first(z, self.group)

    def generator(self, device):
        return torch.Generator(device=device).manual_seed(SEED)

    def sum(self, values, device):
        return sum_over_ranks(values, self.group, device=device)

    def max(self, values, device):
        return max_over_ranks(values, self.group, device=device)


def data_parallel_of(option):
    """None (off) or a DataParallel for data_parallel=False / True (the world) / a group."""
    if option is False or option is None:
        return None
    require_initialized("LaplacePosterior(data_parallel=...)")
    return DataParallel(None if option is True else option)


def unwrap(model):
    """The module inside a DistributedDataParallel (or DataParallel) wrapper."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def is_empty(data):
    """A shard with no examples: a pair of tensors with 0 rows or a loader of no batches."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return data[0].shape[0] == 0
    if isinstance(data, DataLoader):
        try:
            return len(data) == 0
        except TypeError:  # an iterable dataset: no length to tell
            return False
    return False


def zero_product(V):
    return torch.zeros_like(V)
