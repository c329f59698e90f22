"""Data-parallel curvature products: 2 processes x 1 thread (gloo) vs 1 process x 1 thread.

Product-bound: GGN products (cache=False, so every product sweeps the data) of an MLP over a
data set split in halves; each product is the local GGN product plus one all_reduce of the
(k, n) block. Prints the seconds per product, the speed-up, and the share of the 2-process
product spent in all_reduce. Rerun: python benchmarks/bench_distributed.py [--repeats 5]
"""

import argparse
import datetime
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

N, D, H, C, K = 1024, 32, 32, 10, 16  # examples, inputs, hidden, classes, vectors per product


def problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.Tanh(), torch.nn.Linear(H, H),
                                torch.nn.Tanh(), torch.nn.Linear(H, C)).eval()
    x, y = torch.randn(N, D), torch.randint(0, C, (N,))
    return model, x, y


def timed_products(hvp, n, products):
    V = torch.randn(K, n)
    hvp(V)  # warm-up (allocations, first-call checks)
    start = time.perf_counter()
    for _ in range(products):
        hvp(V)
    return (time.perf_counter() - start) / products


def worker(rank, world, path, products, out):
    torch.set_num_threads(1)
    from fastlanczos import ggn_vp

    model, x, y = problem()
    loss = torch.nn.CrossEntropyLoss()
    if world == 1:
        hvp = ggn_vp(model, loss, (x, y), cache=False)
        out[rank] = (timed_products(hvp, hvp.num_params, products), 0.0)
        return
    dist.init_process_group("gloo", init_method=f"file://{path}/rv", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    half = N // world
    local = ggn_vp(model, loss, (x[rank * half:(rank + 1) * half],
                                 y[rank * half:(rank + 1) * half]), cache=False)
    spent = [0.0]

    def hvp(V):  # fastlanczos.distributed.data_parallel, with the all_reduce timed
        W = local(V).clone()
        t = time.perf_counter()
        dist.all_reduce(W)
        spent[0] += time.perf_counter() - t
        return W

    per = timed_products(hvp, local.num_params, products)
    out[rank] = (per, spent[0] / (products + 1) / per)
    dist.destroy_process_group()


def run(world, products):
    with tempfile.TemporaryDirectory() as path, mp.Manager() as manager:
        out = manager.dict()
        mp.start_processes(worker, args=(world, path, products, out), nprocs=world,
                           start_method="spawn")
        return max(v[0] for v in out.values()), max(v[1] for v in out.values())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--products", type=int, default=5)
    args = parser.parse_args()
    print(f"GGN products, MLP {D}-{H}-{H}-{C}, N = {N} examples, k = {K} vectors, "
          f"{args.products} products per timing, 1 thread per process, gloo")
    print("| repeat | 1 x 1 s/product | 2 x 1 s/product | speed-up | all_reduce share |")
    print("|---|---|---|---|---|")
    ratios = []
    for r in range(args.repeats):
        one, _ = run(1, args.products)
        two, share = run(2, args.products)
        ratios.append(one / two)
        print(f"| {r} | {one:.4f} | {two:.4f} | {one / two:.2f}x | {100 * share:.1f}% |")
    print(f"median speed-up {statistics.median(ratios):.2f}x over {args.repeats} repeats")


if __name__ == "__main__":
    main()
