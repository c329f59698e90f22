"""Compiled kernels against their plain-torch counterparts, side by side in one run.

    python benchmarks/bench_kernels.py [--quick]

Tables: tridiag_eigh vs torch.linalg.eigh on the dense tridiagonal (float64), and the fused
reorth_step vs reorth.cgs2_step_torch. Times are medians of several runs after a warm-up;
CUDA times come from CUDA events. Slow cases get fewer repetitions (about 2 s each).
"""

import argparse
import statistics
import time
from functools import partial

import torch

from fastlanczos import ops
from fastlanczos.krylov.reorth import cgs2_step_torch


def timeit(fn, device, reps, budget_s=2.0):
    fn()  # warm-up (allocations, lazy init)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    reps = max(3, min(reps, int(budget_s / max(time.perf_counter() - t0, 1e-9))))
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_eigh(device, sizes, reps):
    print(f"\ntridiag_eigh on {device} (float64): ms, median of {reps}")
    print(f"{'k':>6} {'m':>5} {'compiled':>10} {'torch eigh':>11} {'speed-up':>9}")
    for k, m in sizes:
        a = torch.randn(k, m, dtype=torch.float64, device=device)
        b = torch.randn(k, m - 1, dtype=torch.float64, device=device)
        T = torch.diag_embed(a) + torch.diag_embed(b, 1) + torch.diag_embed(b, -1)
        ours = timeit(partial(ops.tridiag_eigh, a, b), device, reps)
        ref = timeit(partial(torch.linalg.eigh, T), device, reps)
        print(f"{k:>6} {m:>5} {ours * 1e3:>10.2f} {ref * 1e3:>11.2f} {ref / ours:>8.2f}x")


def _step(step, basis, w, w0, j):
    # The basis need not be orthonormal for timing; w is reset so values stay bounded. The copy
    # is the same for both sides and small next to the basis.
    step(basis, w.copy_(w0), j)


def bench_reorth(device, sizes, reps):
    print(f"\nreorth_step (fused CGS2) on {device}: ms, median of {reps}")
    print(f"{'dtype':>8} {'k':>3} {'m':>4} {'j':>4} {'n':>9} {'compiled':>10} {'torch':>9} "
          f"{'speed-up':>9} {'GB/s':>7}")
    for dtype in (torch.float64, torch.float32):
        for k, m, j, n in sizes:
            basis = torch.randn(k, m, n, dtype=dtype, device=device)
            w0 = torch.randn(k, n, dtype=dtype, device=device)
            w = w0.clone()
            ours = timeit(partial(_step, ops.reorth_step, basis, w, w0, j), device, reps)
            ref = timeit(partial(_step, cgs2_step_torch, basis, w, w0, j), device, reps)
            moved = 3 * k * (j + 1) * n * basis.element_size()  # the fused floor: V read 3 times
            print(f"{str(dtype)[6:]:>8} {k:>3} {m:>4} {j:>4} {n:>9} {ours * 1e3:>10.2f} "
                  f"{ref * 1e3:>9.2f} {ref / ours:>8.2f}x {moved / ours / 1e9:>7.1f}")
            del basis, w, w0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="only this device")
    parser.add_argument("--only", choices=["eigh", "reorth"], help="only this table")
    args = parser.parse_args()
    if not ops.available():
        raise SystemExit(f"fastlanczos._C is not built: {ops.load_error()}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and ops.supports("cuda"):
        devices.append(torch.device("cuda"))
        print("GPU:", torch.cuda.get_device_name())
    if args.device:
        devices = [d for d in devices if d.type == args.device]
    for device in devices:
        gpu = device.type == "cuda"
        reps = 3 if args.quick else (20 if gpu else 5)
        eigh_sizes = [(k, m) for k in (1, 16, 256, 1024) for m in (16, 64, 128, 512)]
        if not gpu:  # the CPU run stays short: drop the biggest batches of big matrices
            eigh_sizes = [(k, m) for k, m in eigh_sizes if k * m**3 <= 256 * 128**3]
        if args.quick:
            eigh_sizes = [(k, m) for k, m in eigh_sizes if k * m**3 <= 256 * 64**3]
        if args.only != "reorth":
            bench_eigh(device, eigh_sizes, reps)
        reorth_sizes = [(4, 64, 63, 10**6), (16, 32, 31, 10**5), (1, 128, 127, 10**6),
                        (1, 256, 255, 4000), (2, 256, 255, 4000)]
        if args.quick:
            reorth_sizes = reorth_sizes[:1]
        if args.only != "eigh":
            bench_reorth(device, reorth_sizes, reps)


if __name__ == "__main__":
    main()
