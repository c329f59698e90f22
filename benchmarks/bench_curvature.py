"""Block of k curvature products vs k single products, digits CNN (demo model, training split).

    PYTHONPATH=. python benchmarks/bench_curvature.py [--k 32] [--repeats 2] [--quick]

Rows: the GGN by the "auto" route (k = 1: one jvp + vjp; k >= C: per-example Jacobians once
per data chunk, then two matmuls), the same with the Jacobians cached (the per-product cost
once they are paid for), the GGN's jvp route looped inside one sweep (what a vmap-free block
costs), the empirical Fisher and the Hessian. Timings interleave the contenders and keep
the best of the repeats, so both sides see the same machine load.
"""

import argparse
import time

import torch
from torch import nn

from fastlanczos.curvature import ef_vp, ggn_vp, hessian_vp
from fastlanczos.demo import digits_cnn, digits_split


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def compare(name, single, block, V, repeats, device):
    """Best of `repeats` for each side, the two sides alternating so both see the same load."""
    block(V), single(V[0])  # warm up (torch.func traces, allocator)
    t_block = t_single = float("inf")
    for _ in range(repeats):
        t_block = min(t_block, timed(lambda: block(V), device))
        t_single = min(t_single, timed(lambda: [single(v) for v in V], device))
    print(f"{name:38s}{t_single:12.3f}{t_block:12.3f}{t_single / t_block:9.2f}x", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="GGN rows only")
    p.add_argument("--device", choices=["cpu", "cuda"], help="only this device")
    args = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.device:
        devices = [args.device]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, k = {args.k}")
    print(f"{'product (dtype, device)':38s}{'k singles s':>12s}{'block s':>12s}{'speedup':>10s}")
    for device in map(torch.device, devices):
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(0)
            x, y = digits_split(0, device, dtype)["train"]
            net = digits_cnn().to(device, dtype).eval()
            lf, data = nn.CrossEntropyLoss(), (x, y)
            V = torch.randn(args.k, sum(q.numel() for q in net.parameters()), dtype=dtype,
                            device=device)
            tag = f"({str(dtype)[6:]}, {device.type})"
            ggn = ggn_vp(net, lf, data)
            compare(f"GGN auto {tag}", ggn, ggn, V, args.repeats, device)
            cached = ggn_vp(net, lf, data, cache=True)
            compare(f"GGN cached Jacobians {tag}", ggn, cached, V, args.repeats, device)
            if args.quick:
                continue
            looped = ggn_vp(net, lf, data, method="jvp")
            compare(f"GGN jvp route in one sweep {tag}", ggn, looped, V, args.repeats, device)
            for name, build in (("empirical Fisher", ef_vp), ("Hessian fwd-rev", hessian_vp)):
                hvp = build(net, lf, data)
                compare(f"{name} {tag}", hvp, hvp, V, args.repeats, device)


if __name__ == "__main__":
    main()
