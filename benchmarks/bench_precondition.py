"""Lanczos steps to tolerance with and without the diagonal preconditioner, digits CNN.

    PYTHONPATH=. python benchmarks/bench_precondition.py [--samples 16] [--epochs 30]

The demo's CNN is trained (MAP, weight decay 1), the GGN's per-example Jacobians are cached,
and for each prior precision and tolerance the same z is sampled plainly
(x = A^{-1/2} z) and preconditioned (x = D^{-1/2} (D^{-1/2} A D^{-1/2})^{-1/2} z, D = diag A).
Both are exact draws of N(0, A^{-1}); the table is the number of products each needs.
"""

import argparse
import time

import torch
from torch import nn

from fastlanczos.demo import digits_cnn, digits_split, train_map
from fastlanczos.laplace import LaplacePosterior


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--m", type=int, default=400, help="most Lanczos steps")
    p.add_argument("--priors", type=float, nargs="+", default=[1.0, 10.0, 100.0, 1000.0])
    p.add_argument("--tols", type=float, nargs="+", default=[1e-2, 1e-4])
    args = p.parse_args()
    torch.manual_seed(0)
    data = digits_split(0)
    net = train_map(digits_cnn(), *data["train"], 1.0, args.epochs)
    post = LaplacePosterior(net, nn.CrossEntropyLoss(), data["train"], cache=True)
    print(f"digits CNN, {post.n} parameters, GGN + prior, {args.samples} samples, m <= {args.m}")
    print(f"{'prior':>8s}{'tol':>8s}{'plain steps':>13s}{'diag steps':>12s}{'plain s':>9s}"
          f"{'diag s':>8s}{'diag(A) max/min':>17s}")
    d0 = post.diagonal() - post.prior_precision
    for prior in args.priors:
        q = post.with_prior_precision(prior)
        d = d0 + prior
        spread = (d.max() / d.min()).item()  # how far apart the diagonal's scales are
        for tol in args.tols:
            row = []
            for pre in (None, "diag"):
                t = time.perf_counter()
                _, info = q.sample(args.samples, m=args.m, tol=tol, precondition=pre,
                                   generator=torch.Generator().manual_seed(1), return_info=True)
                row += [info.steps.float().mean().item(), time.perf_counter() - t,
                        bool(info.converged.all())]
            flag = "" if row[2] and row[5] else "  (not all converged)"
            print(f"{prior:8g}{tol:8.0e}{row[0]:13.1f}{row[3]:12.1f}{row[1]:9.2f}{row[4]:8.2f}"
                  f"{spread:17.1e}{flag}", flush=True)


if __name__ == "__main__":
    main()
