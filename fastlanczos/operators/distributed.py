"""Data-parallel products with torch.distributed: each rank its shard of the data.

A curvature of a summed loss is a sum over examples, so the product on the whole data set is
the sum of the ranks' products on their shards: the rank-local product followed by one
all_reduce (SUM) of the (k, n) block. Every rank then holds the same product (an all_reduce
leaves bitwise the same sum on every rank), so every rank runs the same Lanczos recurrence on
the same vectors with no further messages. Shards may be uneven; an empty one contributes
zero. Backend-agnostic: gloo on CPUs, NCCL on GPUs (the tensors stay on their device).
"""

import torch
import torch.distributed as dist


def require_initialized(what):
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(f"{what} needs torch.distributed to be initialized "
                         "(torch.distributed.init_process_group) on every rank")


def data_parallel(hvp, group=None):
    """V -> sum over the ranks of `group` (default: the world) of hvp(V), for V of shape (n,)
    or (k, n), the same V on every rank. hvp: this rank's product on its data shard."""
    require_initialized("data_parallel")
    if not callable(hvp):
        raise TypeError(f"data_parallel needs a callable product, got {type(hvp).__name__}")

    def summed(V):
        # a copy: all_reduce writes in place, and hvp's output may be its input or a tensor
        # it keeps (an identity product, a cache)
        out = hvp(V).clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    summed.num_params = getattr(hvp, "num_params", None)
    return summed


def sum_over_ranks(values, group=None, dtype=torch.float64, device="cpu"):
    """The list of floats summed over the ranks (one all_reduce)."""
    t = torch.tensor(values, dtype=dtype, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t.tolist()


def max_over_ranks(values, group=None, dtype=torch.float64, device="cpu"):
    t = torch.tensor(values, dtype=dtype, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return t.tolist()


def broadcast_from_first(t, group=None):
    """t as the group's first rank holds it, on every rank (in place): one draw of z for all."""
    src = 0 if group is None else dist.get_global_rank(group, 0)
    dist.broadcast(t, src=src, group=group)
    return t
