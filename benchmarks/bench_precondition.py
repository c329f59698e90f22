"""Products and time per batch of samples with and without preconditioning.

    PYTHONPATH=. python benchmarks/bench_precondition.py [--samples 32] [--tol 1e-6]
        [--epochs 30] [--grid 150] [--repeats 2] [--threads 2] [--skip-cnn]

1. The demo's digits CNN (MAP, weight decay 1; float64; GGN with cached Jacobians + prior 1):
   for precondition None, "auto", Nystrom rank 64 / 128 and "diag", the same z is sampled to
   tol; each preconditioned draw is compared with ITS OWN dense reference
   R z = G (G A G)^{-1/2} z (a different draw than A^{-1/2} z, with the same distribution).
   Vector products count the sketch's columns; wall time includes building the sketch.
2. The control a low-rank sketch cannot help: a 2-D grid Laplacian GMRF (tau 0.1), where
   "auto" must not cost more than 5% over None (it should decline after one small sketch).
Every row is run `repeats` times, interleaved; the table shows the fastest time.
"""

import argparse
import time

import torch
from torch import nn

import fastlanczos as fl
from fastlanczos.demo import digits_cnn, digits_split, train_map
from fastlanczos.gmrf import grid_precision
from fastlanczos.laplace import LaplacePosterior


def dense_precision(post):
    eye = torch.eye(post.n, dtype=post.theta_hat.dtype)
    rows = torch.cat([post.precision_vp(eye[i:i + 512]) for i in range(0, post.n, 512)])
    return 0.5 * (rows + rows.T)


def own_reference(A, pre, z):
    """R z for R = G (G A G)^{-1/2}, G = pre's root (identity for None)."""
    G = torch.eye(A.shape[0], dtype=A.dtype) if pre is None else pre.root(
        torch.eye(A.shape[0], dtype=A.dtype))
    w, q = torch.linalg.eigh(G @ A @ G)
    return z @ (G @ (q * w.rsqrt()) @ q.T).T


def cnn_rows(args):
    torch.manual_seed(0)
    data = digits_split(0)
    net = train_map(digits_cnn(), *data["train"], 1.0, args.epochs).double()
    x, y = data["train"]
    post = LaplacePosterior(net, nn.CrossEntropyLoss(), (x.double(), y), prior_precision=1.0)
    A = dense_precision(post)
    ev = torch.linalg.eigvalsh(A)
    print(f"\ndigits CNN, n = {post.n}, {x.shape[0]} images, GGN (cached: "
          f"{post.curvature_vp.cached}) + prior 1, kappa {float(ev[-1] / ev[0]):.1e}; "
          f"{args.samples} samples to tol {args.tol:g}, float64, {torch.get_num_threads()} "
          "threads")
    z = torch.randn(args.samples, post.n, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    curv = post.curvature_vp
    variants = {
        "None": lambda: None,
        "nystrom rank=auto": lambda: fl.nystrom_preconditioner(
            curv, post.n, shift=1.0, num_vectors=args.samples, tol=args.tol),
        "nystrom r=64": lambda: fl.nystrom_preconditioner(curv, post.n, rank=64, shift=1.0),
        "nystrom r=128": lambda: fl.nystrom_preconditioner(curv, post.n, rank=128, shift=1.0),
        "diag": lambda: post.diagonal(),
    }
    best, rows = {}, {}
    for _ in range(args.repeats):
        for name, make in variants.items():
            t = time.perf_counter()
            pre = make()
            x_s, info = fl.inv_root_apply(curv, z, 400, shift=1.0, tol=args.tol,
                                          precondition=pre, return_info=True)
            seconds = time.perf_counter() - t
            best[name] = min(best.get(name, seconds), seconds)
            rows[name] = (info, x_s, pre)
    header = ("| precondition | rank | mean steps | vector products (incl. sketch) | vs None |"
              " seconds | vs None | max error / tol |")
    print(header + "\n|" + "---|" * 8)
    base_products = rows["None"][0].products * args.samples
    for name, (info, x_s, pre) in rows.items():
        ref = own_reference(A, _as_object(pre), z)
        err = (torch.linalg.vector_norm(x_s - ref, dim=1) /
               torch.linalg.vector_norm(ref, dim=1)).max().item()
        products = info.products * args.samples + info.preconditioner_products
        print(f"| {name} | {info.preconditioner_rank} | {info.steps.double().mean():.1f} | "
              f"{products} | {products / base_products:.2f}x | {best[name]:.2f} | "
              f"{best[name] / best['None']:.2f}x | "
              f"{err / args.tol:.2f} |", flush=True)


def _as_object(pre):
    if isinstance(pre, torch.Tensor):
        from fastlanczos.krylov.precondition import Diagonal
        return Diagonal(pre)
    return pre


def gmrf_rows(args):
    Q = grid_precision((args.grid, args.grid), 0.1)
    print(f"\n2-D grid GMRF {args.grid}x{args.grid} (n = {args.grid ** 2}), tau 0.1, 8 samples "
          f"to tol {args.tol:g}, float64, {torch.get_num_threads()} threads")
    best, info = {}, {}
    for _ in range(args.repeats):
        for pre in (None, "auto"):
            t = time.perf_counter()
            _, info[pre] = fl.sample_gaussian(Q, 8, seed=1, tol=args.tol, precondition=pre,
                                              return_info=True)
            seconds = time.perf_counter() - t
            best[pre] = min(best.get(pre, seconds), seconds)
    print("| precondition | rank | steps | sketch products | seconds | vs None |\n" + "|---" * 6
          + "|")
    for pre in (None, "auto"):
        i = info[pre]
        print(f"| {pre} | {i.preconditioner_rank} | {int(i.steps.max())} | "
              f"{i.preconditioner_products} | {best[pre]:.3f} | {best[pre] / best[None]:.3f}x |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--grid", type=int, default=150)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-cnn", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    gmrf_rows(args)
    if not args.skip_cnn:
        cnn_rows(args)


if __name__ == "__main__":
    main()
