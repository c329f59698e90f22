"""Tolerances below what the dtype can attain: what real runs report, with and without the floor.

For each operator, dtype and tol, one real run of inv_sqrt_apply (k = 4 columns) against a
float64 eigh reference of the float64 operator (the float32 runs see the operator rounded
to float32: part of what float32 can attain). Without the floor (krylov/stopping.py, "the
floor of the dtype") a column counts as converged when the rule's estimate meets tol, and
y = f(T) e_1 keeps converging after x has stopped: converged columns with errors far above
tol. With it the reported estimate is at least eps x the conditioning of f at T, and such a
tol reports converged=False with a warning. The stop (steps) is the same either way.

Columns: converged columns of 4 without / with the floor, the worst actual error / tol among
the converged ones (the promise is <= 1), the steps, and with the floor the largest reported
estimate / the largest actual error (>= 1 is an honest estimate; how pessimistic it is).

    PYTHONPATH=. python benchmarks/bench_floor.py [--threads 1] [--no-networks]
"""

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_stopping import dense_cases  # noqa: E402
from conftest import dense_funm  # noqa: E402
from network_curvatures import network_curvatures, unseen_network_curvatures  # noqa: E402

import fastlanczos as fl  # noqa: E402
from fastlanczos.krylov import projected  # noqa: E402

TOLS = {torch.float32: (1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
        torch.float64: (1e-9, 1e-10, 1e-11, 1e-12, 1e-13)}


class NoFloor:
    """Inside the block the floor is 0: the rule's estimate alone, as before the floor."""

    def __enter__(self):
        self.saved = projected.attainable_term
        projected.attainable_term = lambda fn, theta, first, y: torch.zeros_like(theta[:, 0])

    def __exit__(self, *exc):
        projected.attainable_term = self.saved


def run(A, z, tol, m, ref):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, info = fl.inv_sqrt_apply(A, z, m, tol=tol, return_info=True)
    err = (x.double() - ref).norm(dim=1) / ref.norm(dim=1)
    return info, err, len(caught)


def rows(name, A64, k=4, z_seed=2):
    n = A64.shape[0]
    z64 = torch.randn(k, n, dtype=torch.float64, generator=torch.Generator().manual_seed(z_seed))
    ref = dense_funm(A64, z64, torch.rsqrt)
    m = min(n, 400)
    for dtype, tols in TOLS.items():
        A, z = A64.to(dtype), z64.to(dtype)
        for tol in tols:
            with NoFloor():
                before, err0, _ = run(A, z, tol, m, ref)
            after, err, warned = run(A, z, tol, m, ref)
            c0, c1 = before.converged, after.converged
            worst0 = float((err0[c0] / tol).max()) if bool(c0.any()) else 0.0
            worst1 = float((err[c1] / tol).max()) if bool(c1.any()) else 0.0
            honest = float(after.error_estimate.max() / err.max())
            steps = f"{int(before.steps.max())}/{int(after.steps.max())}"
            print(f"{name[:34]:34s} {str(dtype)[6:]:7s} {tol:7.0e} {int(c0.sum()):4d} "
                  f"{worst0:9.2f} {int(c1.sum()):4d} {worst1:9.2f} {steps:>9s} "
                  f"{honest:8.2f} {'yes' if warned else 'no':>4s}", flush=True)
            yield int(c0.sum()), worst0, int(c1.sum()), worst1, honest


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-networks", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cases = list(dense_cases(800))
    if not args.no_networks:  # trained first: their progress bars stay out of the table
        cases += list(network_curvatures()) + list(unseen_network_curvatures())
    print(f"torch threads: {args.threads}; k = 4 columns; inv_sqrt; float64 eigh reference")
    print(f"{'operator':34s} {'dtype':7s} {'tol':>7s} {'conv':>4s} {'max e/tol':>9s} "
          f"{'conv':>4s} {'max e/tol':>9s} {'steps':>9s} {'est/err':>8s} {'warn':>4s}")
    print(f"{'':34s} {'':7s} {'':7s} {'(without floor)':>14s} {'(with floor)':>14s}")
    out = [r for name, A in cases for r in rows(name, A)]
    over0 = sum(1 for c, w, _, _, _ in out if c and w > 1)
    over1 = sum(1 for _, _, c, w, _ in out if c and w > 1)
    print(f"runs with a converged column above tol: without the floor {over0} of {len(out)}, "
          f"with it {over1}; worst e/tol {max(r[1] for r in out):.1f} -> "
          f"{max(r[3] for r in out):.2f}; reported estimate / error: min "
          f"{min(r[4] for r in out):.2f}, median {sorted(r[4] for r in out)[len(out) // 2]:.2f}")


if __name__ == "__main__":
    main()
