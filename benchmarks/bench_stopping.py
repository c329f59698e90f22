"""The tolerance stop against the oracle m (the smallest m whose iterate meets tol).

For each operator, f and tol: the oracle from one full basis and a float64 reference, then
the old rule (stop when the change between sparse checks is below tol: the previous check's
error) and the new one (krylov/stopping.py: the current iterate's error from the decay of
its one-step changes), side by side in one process. Columns: the largest stop over the
k columns, the stop / oracle ratio (worst column), the actual error / tol (worst column),
and the share of the run's time spent in checks (small solves and estimates). "bnd": the
new rule given the lower bound a user knows (known_bound: the prior of a GGN + prior, a
prescribed spectrum's smallest eigenvalue less 0.1%), which stops on the Gauss-Radau
estimate (krylov/radau.py).

    PYTHONPATH=. python benchmarks/bench_stopping.py [--quick] [--threads 1]
"""

import argparse
import math
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import error_curve, spd_from_spectrum  # noqa: E402
from network_curvatures import dense  # noqa: E402

from fastlanczos.krylov import funm as funm_module  # noqa: E402
from fastlanczos.krylov.stopping import Stopping  # noqa: E402
from fastlanczos.operators import as_block_matvec  # noqa: E402


def spectra(n, g):
    """The three prescribed spectra of size n (g draws the cluster's spread)."""
    return {"logspace 1e-3..1": torch.logspace(-3, 0, n),
            "clustered + 10 large": torch.cat([1 + 1e-3 * torch.rand(n - 10, generator=g),
                                               torch.linspace(5, 50, 10)]),
            "few outliers": torch.cat([torch.linspace(1, 2, n - 4),
                                       torch.tensor([1e-2, 1e-1, 10.0, 30.0])])}


def dense_cases(n):
    for name, ev in spectra(n, torch.Generator().manual_seed(0)).items():
        A, _ = spd_from_spectrum(ev, seed=1)
        yield f"{name} (n={n})", A


def cnn_ggn(images):
    """The digits CNN's GGN + prior 1 on `images` training images, as a dense float64 matrix
    (formed by products with the identity: the reference needs it anyway)."""
    from fastlanczos.curvature import ggn_vp
    from fastlanczos.demo import digits_cnn, digits_split, train_map
    torch.manual_seed(0)
    data = digits_split(dtype=torch.float64)
    x, y = data["train"][0][:images], data["train"][1][:images]
    net = train_map(digits_cnn().double(), x, y, delta=1.0, epochs=30)
    G = dense(ggn_vp(net, torch.nn.CrossEntropyLoss(), (x, y), cache=True), 1.0)
    return f"digits CNN GGN + I (n={G.shape[0]}, {images} images)", G


def known_bound(name, A):
    """The lower bound of A's spectrum a user would pass as eig_lower_bound: the prior of a
    GGN or an empirical Fisher (PSD) plus prior; none for a Hessian; for a prescribed
    spectrum its smallest eigenvalue less 0.1% (a bound known to that accuracy)."""
    found = re.search(r"(GGN|EF) \+ ([0-9.e-]+|I)", name)
    if found:
        return 1.0 if found.group(2) == "I" else float(found.group(2))
    if "Hessian" in name:
        return None
    return float(torch.linalg.eigvalsh(A)[0]) * (1 - 1e-3)


class CheckTimer:
    """Time spent inside Stopping.on_check (the small solves, estimates and the read)."""

    def __enter__(self):
        self.seconds, self.calls, original = 0.0, 0, Stopping.on_check
        self.original = original

        def timed(state, t, j):
            t0 = time.perf_counter()
            try:
                return original(state, t, j)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
        Stopping.on_check = timed
        return self

    def __exit__(self, *exc):
        Stopping.on_check = self.original


def run_rule(A, z, f, m, tol, rule, bound=None):
    matvec = as_block_matvec(A, z, 0.0)
    with CheckTimer() as timer:
        t0 = time.perf_counter()
        x, info = funm_module.funm_block(matvec, z, f, m, tol=tol, rule=rule, bound=bound)
        total = time.perf_counter() - t0
    return x, info, timer.seconds / total, timer.calls


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="n = 400, one CNN size, k = 2")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    n, k, images = (400, 2, 300) if args.quick else (800, 4, 600)
    cases = [(name, A, f) for name, A in dense_cases(n) for f in ("inv_sqrt", "log", "sqrt")]
    cnn_name, G = cnn_ggn(images)
    cases.append((cnn_name, G, "inv_sqrt"))
    print(f"torch threads: {args.threads}; k = {k} columns; worst column shown")
    print(f"{'operator':40s} {'f':8s} {'tol':>6s} {'oracle':>6s} {'old m':>6s} {'new m':>6s} "
          f"{'old/or':>6s} {'new/or':>6s} {'old err/tol':>11s} {'new err/tol':>11s} "
          f"{'new est/tol':>11s} {'checks':>6s} {'check share':>11s} {'bnd m':>6s} "
          f"{'bnd/or':>6s} {'bnd err/tol':>11s} {'bnd share':>9s}")
    for name, A, f in cases:
        z = torch.randn(k, A.shape[0], dtype=torch.float64,
                        generator=torch.Generator().manual_seed(2))
        m = min(A.shape[0], 320)
        curve, ref = error_curve(A, z, f, m)
        bound = known_bound(name, A)
        for tol in (1e-3, 1e-6, 1e-9):
            meets = [(curve[c] <= tol).nonzero() for c in range(k)]
            if any(len(mt) == 0 for mt in meets):
                print(f"{name:40s} {f:8s} {tol:6.0e}  not reached in {m} steps")
                continue
            orc = torch.tensor([int(mt[0]) + 1 for mt in meets])
            out = {}
            for rule in ("previous", "current"):
                x, info, share, calls = run_rule(A, z, f, m, tol, rule)
                err = (x - ref).norm(dim=1) / ref.norm(dim=1)
                out[rule] = (info.steps, err, info.error_estimate, share, calls)
            x, info, share2, _ = run_rule(A, z, f, m, tol, "current", bound)
            s2, e2 = info.steps, (x - ref).norm(dim=1) / ref.norm(dim=1)
            (s0, e0, _, _, _), (s1, e1, est1, share, calls) = out["previous"], out["current"]
            print(f"{name:40s} {f:8s} {tol:6.0e} {int(orc.max()):6d} {int(s0.max()):6d} "
                  f"{int(s1.max()):6d} {float((s0 / orc).max()):6.3f} "
                  f"{float((s1 / orc).max()):6.3f} {float((e0 / tol).max()):11.2e} "
                  f"{float((e1 / tol).max()):11.3f} {float((est1 / tol).max()):11.3f} "
                  f"{calls:6d} {share:11.1%} {int(s2.max()):6d} {float((s2 / orc).max()):6.3f} "
                  f"{float((e2 / tol).max()):11.3f} {share2:9.1%}")
            if math.isnan(share):
                raise SystemExit("no timing")


if __name__ == "__main__":
    main()
