"""The Gauss-Radau stop on spectra shaped like a GGN + prior: a null space at the prior (the
exact bound) and a tail above it with a gap (benchmarks/bench_stopping's spectra have none).

Each seed draws n = 500 eigenvalues: prior 10^U(-4, 0) on a null space, plus r ~ U(20, 250)
tail eigenvalues of one kind, shifted by the prior: a power law k^-p (p ~ U(0.5, 2.5)),
log-uniform on [1e-2, 1e2], or four clusters 1% wide at centres log-uniform on [0.1, 100];
or logspace(-3, 0) + prior with no null space. f in inv_sqrt, log, sqrt; tol 1e-2, 1e-3,
1e-4, 1e-6, 1e-8; 3 z columns; eig_lower_bound = the smallest eigenvalue (exact, as a GGN's
prior is). Oracle: the first m whose iterate meets tol (one basis, float64 eigh reference).
Columns that never meet tol or report converged=False are left out.

    PYTHONPATH=. python benchmarks/bench_null_space_spectra.py [--seeds 36] [--threads 1]
"""

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_stopping_sweep import summary  # noqa: E402
from conftest import error_curve, spd_from_spectrum  # noqa: E402

import fastlanczos as fl  # noqa: E402

KINDS = ("power law", "log-uniform", "clusters", "logspace")
TOLS = (1e-2, 1e-3, 1e-4, 1e-6, 1e-8)


def spectrum(seed, n=500):
    """(kind, eigenvalues (float64), prior) of one seed (module doc)."""
    g = torch.Generator().manual_seed(1000 + seed)
    kind = KINDS[int(torch.randint(0, 4, (1,), generator=g))]
    prior = float(10 ** (-4 * torch.rand(1, generator=g)))
    r = int(torch.randint(20, n // 2, (1,), generator=g))
    if kind == "power law":
        p = 0.5 + 2 * torch.rand(1, generator=g).double()
        tail = torch.arange(1, r + 1).double() ** -p
    elif kind == "log-uniform":
        tail = 10 ** (4 * torch.rand(r, generator=g).double() - 2)
    elif kind == "clusters":
        centres = 10 ** (3 * torch.rand(4, generator=g).double() - 1)
        tail = (centres[torch.randint(0, 4, (r,), generator=g)]
                * (1 + 0.01 * torch.rand(r, generator=g).double()))
    else:
        return kind, torch.logspace(-3, 0, n).double() + prior, prior
    return kind, torch.cat([torch.zeros(n - r, dtype=torch.float64), tail]) + prior, prior


def rows_for(seed, verbose=False):
    """(kind, [(error / tol, stop / oracle, oracle)]) over f, tol and the 3 columns."""
    kind, ev, prior = spectrum(seed)
    n = ev.numel()
    A, _ = spd_from_spectrum(ev, seed=seed)
    rows = []
    for f in ("inv_sqrt", "log", "sqrt"):
        z = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        m = 300
        curve, ref = error_curve(A, z, f, m)
        for tol in TOLS:
            x, info = fl.funm_apply(A, z, f, m, tol=tol, eig_lower_bound=float(ev.min()),
                                    return_info=True)
            err = (x - ref).norm(dim=1) / ref.norm(dim=1)
            for c in range(3):
                met = (curve[c] <= tol).nonzero()
                if not len(met) or not bool(info.converged[c]):
                    continue
                oracle, stop = int(met[0]) + 1, int(info.steps[c])
                rows.append((float(err[c]) / tol, stop / oracle, oracle))
                if verbose and err[c] > tol:
                    print(f"  above tol: seed {seed} {kind}, prior {prior:.1e}, {f}, tol {tol:g},"
                          f" column {c}: {float(err[c]) / tol:.2f}x at step {stop} (oracle "
                          f"{oracle})")
    return kind, rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=36)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # tol 1e-8 near float64's floor
    by_kind = {k: [] for k in KINDS}
    last = args.first_seed + args.seeds - 1
    print(f"torch threads: {args.threads}; seeds {args.first_seed}..{last}; n = 500; "
          f"tols {', '.join(f'{t:g}' for t in TOLS)}")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        kind, rows = rows_for(seed, verbose=True)
        by_kind[kind] += rows
    print(f"{'spectrum':12s} stops  >tol max e/tol  late mean s/o  max s/o")
    for kind, rows in by_kind.items():
        if rows:
            print(f"{kind:12s} {summary(rows)}")
    print(f"{'all':12s} {summary([r for rows in by_kind.values() for r in rows])}")
    print("late: stop > ceil(1.05 oracle); e/tol: actual error / tol; s/o: stop / oracle")


if __name__ == "__main__":
    main()
