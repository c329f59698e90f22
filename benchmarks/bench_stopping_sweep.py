"""The tolerance stop at 33 tolerances (1e-2 to 1e-10) per operator, not three.

bench_stopping.py runs the rule at tol 1e-3 / 1e-6 / 1e-9; a rule tuned on three
tolerances can look better than it is. Here each operator and f is run once with every
step checked (the tolerance never met), recording the error estimate of every iterate;
the stop at a tolerance is then the first step whose estimate is below it, and its actual
error and the oracle (the smallest m that meets tol) come from one full basis and a
float64 reference. A real run checks every step only from LEAD steps before its predicted
stop and keeps fewer earlier iterates for its fit, so its stops can differ by a step.
Summary by oracle size: below 20 steps a single step is 5-50% of the oracle, and the
1.05x target (ceil(1.05 oracle)) leaves no step to spare.

--held-out runs instead 5 other draws (eigenvectors, spectrum's random part, z) of four of
the spectra, inv_sqrt: instances the rule was not tuned on. --networks runs six curvatures of
other networks (network_curvatures.py: MLP, logistic regression, CNN at another prior, an
empirical Fisher, a regression MLP's GGN and Hessian), two z draws each, inv_sqrt.
--real runs instead funm_apply at each tolerance with its own check schedule (33 runs per
operator, several times slower): what a user gets, where a replay checks every step.
--unseen-networks runs five more made after the rule's last change and never used to choose
it (a two-moons ReLU MLP, a tanh RNN, a Poisson regression MLP, the CNN at prior 1e-4, a
digits MLP's Hessian), the same way.

    PYTHONPATH=. python benchmarks/bench_stopping_sweep.py [--threads 1] [--no-cnn]
        [--real] [--held-out [--first-seed 10] | --networks | --unseen-networks]
"""

import argparse
import contextlib
import math
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_stopping import cnn_ggn, dense_cases, known_bound, spectra  # noqa: E402
from conftest import error_curve, spd_from_spectrum  # noqa: E402
from network_curvatures import network_curvatures, unseen_network_curvatures  # noqa: E402

from fastlanczos.krylov import funm as funm_module  # noqa: E402
from fastlanczos.krylov.stopping import Stopping  # noqa: E402
from fastlanczos.operators import as_block_matvec  # noqa: E402

TOLS = torch.logspace(-2, -10, 33, dtype=torch.float64)


def more_spectra():
    """Spectra beside bench_stopping's: slower decay, a power law, flat, two clusters."""
    g = torch.Generator().manual_seed(5)
    spectra = {"logspace 1e-4..1 (n=1500)": torch.logspace(-4, 0, 1500),
               "k^-2 + 1e-4 (n=1200)": torch.arange(1, 1201.0) ** -2.0 + 1e-4,
               "uniform 1..100 (n=1000)": torch.linspace(1, 100, 1000),
               "two clusters 1, 100 (n=1000)": two_clusters(g)}
    for name, ev in spectra.items():
        yield name, spd_from_spectrum(ev, seed=3)[0], "inv_sqrt"


def two_clusters(g):
    return torch.cat([1 + 0.01 * torch.rand(600, generator=g), 100 + torch.rand(400, generator=g)])


def held_out(seeds=range(10, 15)):
    """Other draws of four spectra: each seed makes the eigenvectors, the random part of the
    spectrum and z (seed + 100; the tuned-on instances use seeds 0-5)."""
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        cases = {"two clusters 1, 100": two_clusters(g), **spectra(800, g)}  # g in this order
        for name, ev in cases.items():
            yield (f"{name}, seed {seed}", spd_from_spectrum(ev, seed=seed)[0], "inv_sqrt",
                   seed + 100)


def sweep_cases(kind, first_seed=10, cnn=True):
    """(name, A, f, z seed) of a set: "tuned" (bench_stopping's spectra x 3 f, more_spectra,
    the CNN), "held" (held_out from first_seed), "networks" or "unseen" (two z draws each)."""
    if kind == "held":
        return list(held_out(range(first_seed, first_seed + 5)))
    if kind in ("networks", "unseen"):
        made = network_curvatures() if kind == "networks" else unseen_network_curvatures()
        return [(f"{name}, z {z_seed}", A, "inv_sqrt", z_seed)
                for name, A in made for z_seed in (2, 7)]
    cases = [(name, A, f, 2) for name, A in dense_cases(800) for f in ("inv_sqrt", "log", "sqrt")]
    cases += [(*case, 2) for case in more_spectra()]
    if cnn:
        cases.append((*cnn_ggn(600), "inv_sqrt", 2))
    return cases


class EveryStep:
    """Inside the block every step is checked and each check's estimate is kept."""

    def __enter__(self):
        self.estimates = {}
        self.saved = (Stopping._estimate, Stopping._radau_stop, Stopping._schedule)
        estimate, radau, recorded = Stopping._estimate, Stopping._radau_stop, self.estimates

        def record(method):
            def recording(state, j, *args):
                out = method(state, j, *args)
                recorded[j] = out[0].clone()  # with a bound the Gauss-Radau one comes last
                return out
            return recording
        Stopping._estimate, Stopping._radau_stop = record(estimate), record(radau)
        Stopping._schedule = lambda state, j, live, predicted: setattr(state, "dense_from", 0)
        return self

    def __exit__(self, *exc):
        Stopping._estimate, Stopping._radau_stop, Stopping._schedule = self.saved


@contextlib.contextmanager
def quiet_floor():
    """Without the warning of a tol below the dtype's floor (krylov/stopping.py)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".* is below the accuracy")
        yield


def stops(A, f, k, m, z_seed=2, bound=None):
    """(error/tol, stop/oracle, oracle) for every column and tolerance the run reaches.
    bound: funm_apply's eig_lower_bound (the Gauss-Radau estimate), or None (the rule)."""
    z = torch.randn(k, A.shape[0], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(z_seed))
    curve, _ = error_curve(A, z, f, m)
    with EveryStep() as run:
        with quiet_floor():  # tol 1e-15 is below the floor on purpose
            funm_module.funm_block(as_block_matvec(A, z, 0.0), z, f, m, tol=1e-15,
                                   bound=bound)
    est = torch.full((k, m), math.inf, dtype=torch.float64)
    for j, e in run.estimates.items():
        est[:, j] = e
    out = []
    for tol in TOLS.tolist():
        for c in range(k):
            meets, below = (curve[c] <= tol).nonzero(), (est[c] <= tol).nonzero()
            if len(meets) and len(below):
                oracle, stop = int(meets[0]) + 1, int(below[0]) + 1
                out.append((float(curve[c, stop - 1]) / tol, stop / oracle, oracle))
    return out


def real_stops(A, f, k, m, z_seed=2, bound=None):
    """As stops(), from real runs: funm_apply at each tolerance, its own check schedule;
    columns that report converged=False (tol below the dtype's floor) are left out."""
    import fastlanczos as fl
    z = torch.randn(k, A.shape[0], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(z_seed))
    curve, ref = error_curve(A, z, f, m)
    out = []
    for tol in TOLS.tolist():
        with quiet_floor():  # below the floor: converged=False, left out below
            x, info = fl.funm_apply(A, z, f, m, tol=tol, return_info=True,
                                    eig_lower_bound=bound)
        err = (x - ref).norm(dim=1) / ref.norm(dim=1)
        for c in range(k):
            meets = (curve[c] <= tol).nonzero()
            if len(meets) and bool(info.converged[c]):
                oracle, stop = int(meets[0]) + 1, int(info.steps[c])
                out.append((float(err[c]) / tol, stop / oracle, oracle))
    return out


def summary(rows):
    over = [e for e, _, _ in rows if e > 1]
    late = sum(r > math.ceil(1.05 * o) / o for _, r, o in rows)
    mean = sum(r for _, r, _ in rows) / len(rows)
    worst = max(e for e, _, _ in rows)
    return (f"{len(rows):5d} {len(over):5d} {worst:8.2f} {late:5d} {mean:8.3f} "
            f"{max(r for _, r, _ in rows):8.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-cnn", action="store_true", help="leave out the digits CNN's GGN")
    p.add_argument("--held-out", action="store_true", help="other draws of four spectra")
    p.add_argument("--first-seed", type=int, default=10, help="--held-out's seeds: 5 from here")
    p.add_argument("--networks", action="store_true", help="other networks' curvatures")
    p.add_argument("--real", action="store_true",
                   help="real runs at each tolerance (their own check schedule), not replays")
    p.add_argument("--unseen-networks", action="store_true",
                   help="five more, never used to choose the rule")
    p.add_argument("--bounded", action="store_true",
                   help="with each operator's known lower bound (known_bound): the "
                        "Gauss-Radau stop; operators without one (Hessians) left out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    k = 4
    kind = ("held" if args.held_out else "networks" if args.networks
            else "unseen" if args.unseen_networks else "tuned")
    cases = sweep_cases(kind, args.first_seed, cnn=not args.no_cnn)
    print(f"torch threads: {args.threads}; k = {k} columns; {len(TOLS)} tolerances 1e-2..1e-10;"
          f" {'real runs' if args.real else 'every step checked, stops replayed'}"
          f"{'; with the known lower bound (Gauss-Radau)' if args.bounded else ''}")
    head = "stops  >tol max e/tol  late mean s/o  max s/o"
    print(f"{'operator':40s} {'f':8s} {head}")
    small, large = [], []
    for name, A, f, z_seed in cases:
        bound = known_bound(name, A) if args.bounded else None
        if args.bounded and bound is None:
            print(f"{name:40s} {f:8s} (no lower bound known: left out)")
            continue
        rows = (real_stops if args.real else stops)(A, f, k, min(A.shape[0], 320), z_seed,
                                                    bound)
        print(f"{name:40s} {f:8s} {summary(rows)}")
        small += [r for r in rows if r[2] < 20]
        large += [r for r in rows if r[2] >= 20]
    print(f"{'all, oracle < 20 steps':49s} {summary(small)}")
    print(f"{'all, oracle >= 20 steps':49s} {summary(large)}")
    print("late: stop > ceil(1.05 oracle); e/tol: actual error / tol; s/o: stop / oracle")


if __name__ == "__main__":
    main()
