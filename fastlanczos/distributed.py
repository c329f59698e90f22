"""fastlanczos.distributed: several GPUs or machines through torch.distributed.

data_parallel(hvp, group=None): each rank's product on its data shard, summed over ranks by
one all_reduce (operators/distributed.py). For parameters split over ranks, pass
shard_group= to funm_apply / inv_sqrt_apply / inv_root_apply / lanczos (krylov/sharded.py);
for posteriors, LaplacePosterior(..., data_parallel=True or a process group).
"""

from .operators.distributed import broadcast_from_first, data_parallel

__all__ = ["broadcast_from_first", "data_parallel"]
