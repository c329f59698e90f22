"""Error and time against m: fastlanczos.inv_sqrt_apply vs dense eigh (float64 reference).

    python benchmarks/bench_core.py            # n = 1000, 2000, 4000, 8000; k = 1 and 32
    python benchmarks/bench_core.py --quick    # n = 1000, 2000

Operator: a dense SPD matrix with a prescribed log-spaced spectrum (kappa 1e4). Dense eigh
time is the time to form A^{-1/2} z from scratch (eigh + two products), the alternative a
user would reach for. Times are medians on this machine's CPU; ratios come from one run.
"""

import argparse
import math

# report sits beside this script, which Python puts first on sys.path.
import report
import torch

import fastlanczos as fl


def spd(n, kappa, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    evals = torch.logspace(-torch.log10(torch.tensor(kappa)).item(), 0, n, dtype=torch.float64)
    return (Q * evals) @ Q.T


def rel_err(x, ref):
    return ((x.double() - ref).norm(dim=1) / ref.norm(dim=1)).max().item()


def median_time(fn, repeat):
    """One warm-up, then the median of `repeat` runs (report.median_time, never cut short)."""
    return report.median_time(fn, repeat, slow_s=math.inf)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--kappa", type=float, default=1e4)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    sizes = (1000, 2000) if args.quick else (1000, 2000, 4000, 8000)
    print(f"backend: {fl.backend_info()}  threads: {torch.get_num_threads()}  "
          f"kappa: {args.kappa:g}")
    print(f"{'n':>6} {'k':>3} {'m':>5} {'rel.err f64':>12} {'rel.err f32':>12} "
          f"{'lanczos s':>10} {'eigh s':>9} {'eigh/lanczos':>12}")
    for n in sizes:
        A = spd(n, args.kappa)
        t_eigh, (evals, Q) = median_time(lambda A=A: torch.linalg.eigh(A), 1)
        for k in (1, 32):
            z = torch.randn(k, n, dtype=torch.float64)
            ref = (Q @ (evals.rsqrt().unsqueeze(1) * (Q.T @ z.T))).T
            t_apply = median_time(lambda: Q @ (evals.rsqrt().unsqueeze(1) * (Q.T @ z.T)), 3)[0]
            for m in (25, 50, 100, 200, 400):
                t, x = median_time(lambda A=A, z=z, m=m: fl.inv_sqrt_apply(A, z, m), args.repeat)
                x32 = fl.inv_sqrt_apply(A.float(), z.float(), m)
                dense = t_eigh + t_apply
                print(f"{n:>6} {k:>3} {m:>5} {rel_err(x, ref):>12.2e} {rel_err(x32, ref):>12.2e} "
                      f"{t:>10.4f} {dense:>9.3f} {dense / t:>12.1f}")


if __name__ == "__main__":
    main()
