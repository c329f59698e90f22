"""The tolerance stop on float32 curvature closures: the rule against the bound the library
derives (fastlanczos/api.py derived_bound: a ggn_vp / ef_vp closure with shift > 0 takes the
shift as its lower bound, and the Gauss-Radau estimate decides).

The sweeps of bench_stopping_sweep.py are float64. A user samples in float32, where the
operator is the closure's own rounding of the curvature: its null space sits up to ~eps ||A||
around the prior. Each row: four small MLPs (cross-entropy, the GGN or the empirical
Fisher), one prior, six tolerances 3e-2..1e-4 (above float32's floor), 4 z columns; the
rule runs on the same closure wrapped in a lambda (no .psd mark). Reference: the closure's
operator formed by products with the identity, solved by float64 eigh; the oracle m from
float32 runs on that dense operator at every m. Converged columns only. --float64: the same
networks and tolerances in float64.

    PYTHONPATH=. python benchmarks/bench_float32_closures.py [--threads 1] [--float64]
"""

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_stopping_sweep import summary  # noqa: E402
from conftest import DENSE_FNS, dense_funm  # noqa: E402
from dense_curvature import mlp  # noqa: E402

import fastlanczos as fl  # noqa: E402

TOLS = [10 ** (-e / 2) for e in range(3, 9)]
NETWORKS = [(8, 4, 200), (10, 3, 300), (6, 5, 150), (12, 2, 400)]  # inputs, classes, examples


def closures(kind, dtype):
    for seed, (inputs, classes, examples) in enumerate(NETWORKS):
        torch.manual_seed(seed)
        net = mlp(inputs, classes).to(dtype)
        x, y = torch.randn(examples, inputs).to(dtype), torch.randint(0, classes, (examples,))
        loss = torch.nn.CrossEntropyLoss(reduction="sum")
        build = fl.ggn_vp if kind == "GGN" else fl.ef_vp
        yield seed, build(net, loss, (x, y))


def rows_for(kind, shift, dtype):
    rule, bound = [], []
    for seed, h in closures(kind, dtype):
        n = h.num_params
        A = h(torch.eye(n, dtype=dtype)).double()
        A = (A + A.T) / 2
        z = torch.randn(4, n, generator=torch.Generator().manual_seed(seed + 10)).to(dtype)
        ref = dense_funm(A + shift * torch.eye(n, dtype=torch.float64), z, DENSE_FNS["inv_sqrt"])

        def error(x):
            return (x.double() - ref).norm(dim=1) / ref.norm(dim=1)
        curve = torch.stack([error(fl.inv_sqrt_apply(A.to(dtype), z, m, shift=shift,
                                                     check=False))
                             for m in range(1, n + 1)], 1)
        for tol in TOLS:
            for out, op in ((rule, lambda V, h=h: h(V)), (bound, h)):
                x, info = fl.inv_sqrt_apply(op, z, n, tol=tol, shift=shift, return_info=True)
                err = error(x)
                for c in range(z.shape[0]):
                    met = (curve[c] <= tol).nonzero()
                    if info.converged[c] and len(met):
                        oracle = int(met[0]) + 1
                        out.append((float(err[c]) / tol, int(info.steps[c]) / oracle, oracle))
    return rule, bound


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--float64", action="store_true",
                   help="the same networks in float64 (is a miss the rounding or the family?)")
    args = p.parse_args()
    dtype = torch.float64 if args.float64 else torch.float32
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # columns at float32's floor: unconverged
    print(f"torch threads: {torch.get_num_threads()}; {str(dtype)[6:]} closures, 4 MLPs x 4 z "
          "columns; "
          f"tols {', '.join(f'{t:.0e}' for t in TOLS)}")
    head = "stops  >tol max e/tol  late mean s/o  max s/o"
    print(f"{'closure + prior':24s} {'stop on':14s} {head}")
    totals = {"the rule": [], "derived bound": []}
    for kind in ("GGN", "EF"):
        for shift in (1e-2, 0.1, 1.0):
            rule, bound = rows_for(kind, shift, dtype)
            for name, rows in (("the rule", rule), ("derived bound", bound)):
                totals[name] += rows
                print(f"{kind + ' + ' + str(shift):24s} {name:14s} {summary(rows)}")
    for name, rows in totals.items():
        print(f"{'all':24s} {name:14s} {summary(rows)}")
    print("late: stop > ceil(1.05 oracle); e/tol: actual error / tol; s/o: stop / oracle")


if __name__ == "__main__":
    main()
