"""What each of the 2 gloo processes of test_distributed.py runs: every scenario once, the
results saved for the test process to compare with single-process runs on the full data."""

import datetime
import os

import torch
import torch.distributed as dist

N_SHARD = (15, 25)  # an uneven split of n = 40 parameters
SPLITS = {"uneven": (7, 13), "empty": (20, 0)}  # examples per rank


def spd(n, seed=0):
    """A dense SPD matrix with a prescribed spectrum (1 .. 100, log-spaced)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (q * torch.logspace(0, 2, n, dtype=torch.float64)) @ q.T


def model_and_data():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    model = model.double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (20,), generator=g)
    return model, x, y


def shard_of(split, rank, x, y):
    start = sum(split[:rank])
    return x[start:start + split[rank]], y[start:start + split[rank]]


def posterior_results(post):
    from fastlanczos.laplace.marglik import log_marginal_likelihood

    g = torch.Generator().manual_seed(3)
    v = torch.randn(3, post.n, generator=g, dtype=torch.float64)
    return {"product": post.curvature_vp(v), "diagonal": post.diagonal(),
            "samples": post.sample(4, m=30, tol=None, precondition=None,
                                   generator=torch.Generator().manual_seed(5)),
            "samples_auto": post.sample(4, m=30, tol=1e-8, precondition="auto",
                                        generator=torch.Generator().manual_seed(5)),
            "marglik": log_marginal_likelihood(post, probes=4, sketch=4, steps=20).value}


def sharded_hvp(A, lo, hi):
    """Slices in, slices out: the whole vectors assembled by one all_reduce."""
    def hvp(V):
        full = torch.zeros(*V.shape[:-1], A.shape[0], dtype=V.dtype)
        full[..., lo:hi] = V
        dist.all_reduce(full)
        return (full @ A.T)[..., lo:hi]
    return hvp


def run(rank, world, path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}/rendezvous", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=30))
    import fastlanczos
    from fastlanczos.distributed import data_parallel
    from fastlanczos.errors import LanczosInputError

    out = {}
    model, x, y = model_and_data()
    loss = torch.nn.CrossEntropyLoss()
    for name, split in SPLITS.items():
        data = shard_of(split, rank, x, y)
        post = fastlanczos.LaplacePosterior(model, loss, data, data_parallel=True,
                                            prior_precision=0.5)
        out[name] = posterior_results(post)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    post = fastlanczos.LaplacePosterior(ddp, loss, shard_of(SPLITS["uneven"], rank, x, y),
                                        data_parallel=dist.group.WORLD, prior_precision=0.5)
    out["ddp"] = posterior_results(post)
    # data_parallel on a plain product: the local matrices sum to spd(12)
    A = spd(12)
    part = A * (0.3 if rank == 0 else 0.7)
    z = torch.randn(3, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out["dp_apply"] = fastlanczos.inv_sqrt_apply(data_parallel(lambda V: V @ part), z, 12)

    # parameter sharding: this rank's slice of n = 40
    A = spd(40)
    z = torch.randn(3, 40, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for name, cut in (("uneven", N_SHARD[0]), ("empty", 0)):
        lo, hi = (0, cut) if rank == 0 else (cut, 40)
        hvp, zl = sharded_hvp(A, lo, hi), z[:, lo:hi]
        group = dist.group.WORLD
        res = {"full": fastlanczos.inv_sqrt_apply(hvp, zl, 30, shard_group=group),
               "none": fastlanczos.inv_sqrt_apply(hvp, zl, 12, reorth="none",
                                                  shard_group=group),
               "tol": fastlanczos.inv_sqrt_apply(hvp, zl, 40, tol=1e-10, return_info=True,
                                                 shard_group=group),
               "root_diag": fastlanczos.inv_root_apply(hvp, zl, 30,
                                                       precondition=torch.diagonal(A)[lo:hi],
                                                       shard_group=group),
               "lanczos": fastlanczos.lanczos(hvp, zl, 20, shard_group=group)}
        out["sharded_" + name] = res
    try:  # ranks that disagree on m fail together instead of hanging
        fastlanczos.inv_sqrt_apply(sharded_hvp(A, 0, 40) if rank == 0 else sharded_hvp(A, 0, 0),
                                   z if rank == 0 else z[:, :0], 10 + rank,
                                   shard_group=dist.group.WORLD)
        out["mismatch"] = "no error"
    except LanczosInputError as err:
        out["mismatch"] = str(err)
    torch.save(out, os.path.join(path, f"rank{rank}.pt"))
    dist.destroy_process_group()
