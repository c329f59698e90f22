"""Full vs partial reorthogonalization: time outside the products, reorthogonalized steps,
and accuracy at equal m.

    PYTHONPATH=. python benchmarks/bench_reorth.py [--threads 2] [--repeats 2] [--skip-cnn]
        [--widths 784 1024 512 10] [--inputs 512] [--k 8] [--m 64]

1. The issue's MLP (784-1024-512-10, n = 1.33M, float32, 512 random inputs, GGN by
   fastlanczos.ggn_vp + prior 1; its Jacobians do not fit the cache): inv_sqrt_apply at fixed
   m, check=False, each mode timed `repeats` times interleaved (fastest shown). The products
   are timed inside each run (every call of the closure, on the basis rows the run hands
   it) and, apart, as m calls on one contiguous block; "outside" = 1 - in-run products / run.
   Partial's answer is compared with full's (no dense reference at this n).
2. The demo CNN's GGN + prior 1 (cached Jacobians, float64): error of both modes against the
   dense eigh reference at equal m.
"""

import argparse
import time

import torch
from torch import nn

import fastlanczos as fl
from fastlanczos.krylov.lanczos import run_lanczos


def mlp(widths):
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).eval()


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def mlp_rows(args):
    torch.manual_seed(0)
    net = mlp(args.widths)
    x = torch.randn(args.inputs, args.widths[0])
    y = torch.randint(0, args.widths[-1], (args.inputs,))
    ggn = fl.ggn_vp(net, nn.CrossEntropyLoss(), (x, y))
    n = ggn.num_params
    z = torch.randn(args.k, n)
    print(f"\nMLP {args.widths}, n = {n / 1e6:.2f}M, float32, GGN over {args.inputs} inputs "
          f"(cached: {ggn.cached}) + prior 1, k = {args.k}, m = {args.m}, "
          f"{torch.get_num_threads()} threads, fastest of {args.repeats}")

    def products():
        for _ in range(args.m):
            ggn(z)

    ggn(z)  # warm up (fills a Jacobian cache when there is one)
    t_prod, _ = best_of(products, args.repeats)
    rows, xs = {}, {}
    modes = ("full", "partial", "none")
    for _ in range(args.repeats):
        for mode in modes:
            spent = [0.0]

            def timed(V):
                t = time.perf_counter()
                out = ggn(V)
                spent[0] += time.perf_counter() - t
                return out
            t, x = best_of(lambda: fl.inv_sqrt_apply(timed, z, args.m, shift=1.0, reorth=mode,
                                                     check=False), 1)
            if mode not in rows or t < rows[mode][0]:
                rows[mode] = (t, spent[0])
            xs[mode] = x
    _, tracker = run_lanczos(lambda V: ggn(V) + V, z, args.m, "partial")
    count = tracker.reorth_count.double()
    diff = float(torch.linalg.vector_norm(xs["partial"] - xs["full"], dim=1).max() /
                 torch.linalg.vector_norm(xs["full"], dim=1).min())
    print(f"products alone (m calls on one contiguous block): {t_prod:.2f} s\n"
          "| reorth | run s | in-run products s | outside products | reorthogonalized steps |"
          "\n|---|---|---|---|---|")
    for mode, (t, inside) in rows.items():
        steps = {"partial": f"{count.mean():.1f} of {args.m} (mean over k)",
                 "full": f"{args.m} of {args.m}", "none": "0"}[mode]
        print(f"| {mode} | {t:.2f} | {inside:.2f} | {1 - inside / t:.1%} | {steps} |")
    print(f"partial vs full at equal m: max relative difference {diff:.1e}")


def cnn_rows(args):
    from fastlanczos.demo import digits_cnn, digits_split, train_map
    from fastlanczos.laplace import LaplacePosterior

    torch.manual_seed(0)
    data = digits_split(0)
    net = train_map(digits_cnn(), *data["train"], 1.0, 20).double()
    xt, yt = data["train"]
    post = LaplacePosterior(net, nn.CrossEntropyLoss(), (xt.double(), yt), prior_precision=1.0)
    eye = torch.eye(post.n, dtype=torch.float64)
    A = torch.cat([post.precision_vp(eye[i:i + 512]) for i in range(0, post.n, 512)])
    w, q = torch.linalg.eigh(0.5 * (A + A.T))
    z = torch.randn(8, post.n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = z @ (q * w.rsqrt()) @ q.T
    print(f"\ndemo CNN GGN + prior 1, n = {post.n}, float64, 8 vectors: relative error against "
          "dense eigh\n| m | full | partial | partial / full |\n|---|---|---|---|")
    for m in (10, 20, 30, 45):
        err = {}
        for mode in ("full", "partial"):
            x = fl.inv_sqrt_apply(post.precision_vp, z, m, reorth=mode)
            err[mode] = float((torch.linalg.vector_norm(x - ref, dim=1) /
                               torch.linalg.vector_norm(ref, dim=1)).max())
        print(f"| {m} | {err['full']:.2e} | {err['partial']:.2e} | "
              f"{err['partial'] / err['full']:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[784, 1024, 512, 10])
    p.add_argument("--inputs", type=int, default=512)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--m", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-cnn", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_cnn:
        cnn_rows(args)
    mlp_rows(args)


if __name__ == "__main__":
    main()
