"""Sampling a ~1e7-parameter model within a memory budget: samples/s, peak memory, the mode.

    PYTHONPATH=. python benchmarks/bench_memory.py [--widths 784 2560 2560 1024 10]
        [--samples 4] [--m 30] [--examples 128] [--budgets none 2e9 1e9] [--threads 2]

An MLP of the given widths (default 11.2M parameters, float32) with a GGN + prior 1 posterior
over `examples` random inputs (products by jvp + vjp: no Jacobian cache at this size). Each
budget runs in a fresh process, so ru_maxrss is that run's peak; "grew" is the peak minus
the process's size after the model, the data and one warm-up product (the model's own
footprint, outside the budget). Fixed m (tol=None), so every row does the same steps.
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from torch import nn
from fastlanczos.laplace import LaplacePosterior
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
w = args["widths"]
layers = []
for a, b in zip(w[:-1], w[1:]):
    layers += [nn.Linear(a, b), nn.Tanh()]
net = nn.Sequential(*layers[:-1]).eval()
x = torch.randn(args["examples"], w[0])
y = torch.randint(0, w[-1], (args["examples"],))
post = LaplacePosterior(net, nn.CrossEntropyLoss(), (x, y), prior_precision=1.0, cache=False)
post.curvature_vp(torch.randn(1, post.n))  # warm up: the product's own buffers
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss()
t = time.perf_counter()
_, info = post.sample(args["samples"], m=args["m"], tol=None, precondition=None,
                      memory_budget=args["budget"], return_info=True)
seconds = time.perf_counter() - t
print(json.dumps({"n": post.n, "seconds": seconds, "grew": rss() - base, "base": base,
                  "plan": info.memory_plan, "products": info.products}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[784, 2560, 2560, 1024, 10])
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--m", type=int, default=30)
    p.add_argument("--examples", type=int, default=128)
    p.add_argument("--budgets", nargs="+", default=["none", "2e9", "1e9"])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    rows = []
    for b in args.budgets:
        budget = None if b == "none" else int(float(b))
        spec = dict(widths=args.widths, samples=args.samples, m=args.m, threads=args.threads,
                    examples=args.examples, budget=budget)
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)],
                             capture_output=True, text=True)
        if out.returncode:
            print(f"budget {b}: {out.stderr.strip().splitlines()[-1]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((b, r))
        print(f"budget {b}: {r}", flush=True)
    n = rows[0][1]["n"]
    print(f"\nMLP {args.widths}, n = {n / 1e6:.1f}M parameters (float32), GGN + prior 1 by "
          f"jvp/vjp over {args.examples} inputs, {args.samples} samples, m = {args.m}, "
          f"{args.threads} threads; peak = growth of ru_maxrss over the model's own footprint")
    print("| memory_budget | mode chosen | block products | samples/s | peak growth (GB) |"
          " within budget |\n|---|---|---|---|---|---|")
    for b, r in rows:
        within = "-" if b == "none" else ("yes" if r["grew"] <= float(b) else "NO")
        print(f"| {b} | {r['plan']} | {r['products']} | {args.samples / r['seconds']:.3f} | "
              f"{r['grew'] / 1e9:.2f} | {within} |")


if __name__ == "__main__":
    main()
