"""The stopping rule offline: record each operator's projected solves once, then replay the
rule (every step checked) or simulate a real run (its own check schedule) in seconds.

bench_stopping_sweep.py runs Lanczos again for every variant of the rule it measures (a real
run per tolerance: 7-12 minutes a set). The rule's decisions depend only on what the
projected solves give (y = f(T_j) e_1, the smallest Ritz value, the residual and floor
terms) and on beta_j, and a column's recurrence does not depend on when it is checked or on
the other columns. So one full basis per operator (`record`) holds everything a run's
Stopping sees: `simulate` drives the real Stopping class with a stand-in for the Lanczos
tracker and the recorded solves, and gives the same stops as funm_apply with reorth="full"
(tests/test_stopping_lab.py checks it against real runs) and the same sweep tables (checked
by hand on 2026-12-05: the replay rows of all four sets and the --real rows of tuned and
unseen equal bench_stopping_sweep's in the README). A change
to stopping.py is then measured on all sets in a few minutes of CPU.

    PYTHONPATH=. python benchmarks/stopping_lab.py record SET [--out DIR]   # SET: tuned,
        unseen, networks, or held<first seed> (e.g. held70); one file per set
    PYTHONPATH=. python benchmarks/stopping_lab.py show SET... [--real] [--cases] [--out DIR]
        [--bounded]   # with each operator's known lower bound (bench_stopping.
                      # known_bound): the Gauss-Radau stop; operators without one left out
    PYTHONPATH=. python benchmarks/stopping_lab.py issue SET... [--bounded] [--out DIR]
        # the issue's promise column by column: real runs at tol 1e-3, 1e-6, 1e-9, each
        # column's stop / oracle, L where it is after ceil(1.05 oracle), A where above tol
"""

import argparse
import contextlib
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_stopping import known_bound  # noqa: E402
from bench_stopping_sweep import TOLS, quiet_floor, summary, sweep_cases  # noqa: E402
from conftest import DENSE_FNS, dense_funm  # noqa: E402

import fastlanczos as fl  # noqa: E402
from fastlanczos.krylov import stopping  # noqa: E402
from fastlanczos.krylov.matfuncs import resolve  # noqa: E402
from fastlanczos.krylov.projected import solve_projected  # noqa: E402


def record(A, f, k=4, m=320, z_seed=2, bound=None):
    """Everything the rule sees for one operator, f and z draw (the sweep's z), plus the
    actual error of every iterate: {"f", "k", "m", "bound", "beta" (k, m), "curve" (k, m),
    "solves": [(y, theta_min, residual term, floor term, Gauss-Radau estimate or None)
    for j = 1..m]}. bound: a lower bound of A's spectrum, for the Gauss-Radau estimate
    (krylov/radau.py; replayed with or without it)."""
    m = min(m, A.shape[0])
    z = torch.randn(k, A.shape[0], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(z_seed))
    fn = resolve(f)[1]
    r = fl.lanczos(A, z, m)
    ref = dense_funm(A, z, DENSE_FNS[f])
    m = r.alpha.shape[1]
    # the tracker's beta has m entries: the last is the residual's norm (A V^T = V^T T + r e_m^T)
    beta = torch.cat([r.beta, r.residual.norm(dim=1, keepdim=True).double()], dim=1)
    solves, curve = [], []
    for j in range(1, m + 1):
        steps = torch.full((k,), j, dtype=torch.int64)
        scale = r.alpha[:, :j].abs().amax(dim=1)  # the padding value: unused at full size
        y, theta, term, floor, radau = solve_projected(
            fn, r.alpha[:, :j], r.beta[:, :j - 1], steps, scale, bound=bound,
            beta_next=beta[:, j - 1])
        x = torch.einsum("kj,kjn->kn", y * z.norm(dim=1, keepdim=True), r.basis[:, :j])
        curve.append((x - ref).norm(dim=1) / ref.norm(dim=1))
        solves.append((y, theta.min(dim=1).values, term, floor, radau))
    return {"f": f, "k": k, "m": m, "bound": bound, "beta": beta,
            "curve": torch.stack(curve, 1), "solves": solves}


class _Tracker:
    """What Stopping reads of the Lanczos tracker (krylov/lanczos.py _Tracker)."""

    def __init__(self, rec):
        k = rec["k"]
        self.done = torch.zeros(k, dtype=torch.bool)
        self.broken = torch.zeros(k, dtype=torch.bool)
        self.znorm = torch.ones(k, dtype=torch.float64)
        self.scale = torch.ones(k, dtype=torch.float64)
        self.steps = torch.zeros(k, dtype=torch.int64)
        self.beta = rec["beta"]
        self.alpha = None


@contextlib.contextmanager
def _recorded_solves(rec, frozen):
    """stopping.solve_projected answers from the record: step j's solve for live columns,
    a stopped column's solve at its stop (padded), as the real run's frozen tridiagonal."""
    def solve(fn, alpha, beta, steps, scale, repair=False, bound=None, beta_next=None):
        j = alpha.shape[1] - 1
        y, low, term, floor, radau = (None if v is None else v.clone()
                                      for v in rec["solves"][j])
        for c, (yc, lc, tc, fc, rc) in frozen.items():
            y[c] = torch.nn.functional.pad(yc, (0, j + 1 - yc.shape[0]))
            low[c], term[c], floor[c] = lc, tc, fc
            if radau is not None:
                radau[c] = rc
        return y, low.unsqueeze(1), term, floor, (radau if bound is not None else None)
    saved = stopping.solve_projected
    stopping.solve_projected = solve
    try:
        yield
    finally:
        stopping.solve_projected = saved


def simulate(rec, tol, real=True, every=4, bounded=False):
    """(stop step per column (1-based; m where it never stopped), stopped by the rule) for
    funm_apply(..., tol=tol, check_every=every) on the recorded operator; real=False checks
    every step (the sweep's replay). bounded: with the recorded lower bound
    (funm_apply's eig_lower_bound), where the record has one."""
    k, m = rec["k"], rec["m"]
    fn = resolve(rec["f"])[1]
    bound = rec.get("bound") if bounded else None
    state = stopping.Stopping(rec["f"], fn, "pd", tol, torch.float64, False, m, every,
                              bound=bound)
    t = _Tracker(rec)
    stop = torch.full((k,), m, dtype=torch.int64)
    frozen = {}
    with _recorded_solves(rec, frozen), quiet_floor():
        for j in range(m):
            t.steps = torch.where(t.done, t.steps, j + 1)
            if real and not state.check_at(j):
                continue
            t.alpha = torch.zeros(k, j + 1, dtype=torch.float64)  # only its width is read
            before = t.done.clone()
            predicted = state._update(t, j, repair=False)
            if real:
                read = state._packed(t, predicted)
                state._schedule(j, read[0], read[1])
            y, low, term, floor, radau = rec["solves"][j]
            for c in (t.done & ~before).nonzero().flatten().tolist():
                stop[c] = j + 1
                frozen[c] = (y[c].clone(), low[c], term[c], floor[c],
                             None if radau is None else radau[c])
            if bool(t.done.all()):
                break
    return stop, t.done.clone()


def stop_rows(rec, real=True, bounded=False):
    """(error/tol, stop/oracle, oracle) per column and tolerance, as bench_stopping_sweep."""
    out, curve = [], rec["curve"]
    for tol in TOLS.tolist():
        stop, done = simulate(rec, tol, real, bounded=bounded)
        for c in range(rec["k"]):
            meets = (curve[c] <= tol).nonzero()
            if len(meets) and bool(done[c]):
                oracle, s = int(meets[0]) + 1, int(stop[c])
                out.append((float(curve[c, s - 1]) / tol, s / oracle, oracle))
    return out


def issue_rows(rec, bounded, tols=(1e-3, 1e-6, 1e-9)):
    """Per tol: [(stop, oracle, late, above)] per column that meets tol in the record."""
    out = {}
    for tol in tols:
        stop, _ = simulate(rec, tol, True, bounded=bounded)
        cells = []
        for c in range(rec["k"]):
            met = (rec["curve"][c] <= tol).nonzero()
            if len(met):
                oracle, s = int(met[0]) + 1, int(stop[c])
                cells.append((s, oracle, s > math.ceil(1.05 * oracle),
                              float(rec["curve"][c, s - 1]) > tol))
        out[tol] = cells
    return out


def cases(kind):
    """The sweep's sets by name: tuned, unseen, networks, held<first seed>."""
    if kind.startswith("held") and kind[4:].isdigit():
        return sweep_cases("held", int(kind[4:]))
    if kind in ("tuned", "networks", "unseen"):
        return sweep_cases(kind)
    raise SystemExit(f"unknown set {kind!r}: tuned, unseen, networks or held<seed>")


def table(rows):
    return summary(rows) if rows else "    0 (none)"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("record", "show", "issue"))
    p.add_argument("sets", nargs="+")
    p.add_argument("--real", action="store_true", help="real runs' schedules, not replays")
    p.add_argument("--cases", action="store_true", help="a row per operator too")
    p.add_argument("--bounded", action="store_true",
                   help="with the known lower bound of each spectrum (Gauss-Radau stop)")
    p.add_argument("--out", default="/tmp/fastlanczos-stopping-lab")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = "stops  >tol max e/tol  late mean s/o  max s/o"
    for kind in args.sets:
        path = out / f"{kind}.pt"
        if args.action == "record":
            torch.save([(name, f, record(A, f, z_seed=z_seed, bound=known_bound(name, A)))
                        for name, A, f, z_seed in cases(kind)], path)
            print(f"{kind}: {path}")
            continue
        if args.action == "issue":
            issue_table(kind, torch.load(path, weights_only=False), args.bounded)
            continue
        modes = (False, True) if args.bounded else (False,)
        small, large = {b: [] for b in modes}, {b: [] for b in modes}
        unbounded = 0
        for name, f, rec in torch.load(path, weights_only=False):
            if args.bounded and rec.get("bound") is None:
                unbounded += 1
                continue
            for bounded in modes:
                rows = stop_rows(rec, args.real, bounded)
                if args.cases:
                    print(f"  {name[:40]:40s} {f:8s} {'bound' if bounded else 'rule':5s} "
                          f"{table(rows)}")
                small[bounded] += [r for r in rows if r[2] < 20]
                large[bounded] += [r for r in rows if r[2] >= 20]
        what = ("real runs" if args.real else "replays") + (
            f"; the rule, then the known bound ({unbounded} operators without one left out)"
            if args.bounded else "")
        print(f"{kind} ({what}): {head}")
        for bounded in modes:
            print(f"  oracle < 20 steps  {table(small[bounded])}\n"
                  f"  oracle >= 20 steps {table(large[bounded])}")


def issue_table(kind, records, bounded):
    """A row per operator: each tol's columns as stop/oracle (L: late, A: above tol), and the
    set's count of late and above-tol columns per tol."""
    print(f"{kind} ({'with the known bound' if bounded else 'the rule'}; real runs)")
    totals = {}
    for name, f, rec in records:
        if bounded and rec.get("bound") is None:
            continue
        parts = []
        for tol, cells in issue_rows(rec, bounded).items():
            late, above, count = totals.get(tol, (0, 0, 0))
            totals[tol] = (late + sum(c[2] for c in cells), above + sum(c[3] for c in cells),
                           count + len(cells))
            parts.append(f"{tol:g}: " + " ".join(
                f"{s}/{o}{'L' if lt else ''}{'A' if ab else ''}" for s, o, lt, ab in cells))
        print(f"  {name[:36]:36s} {f:8s} | " + " | ".join(parts))
    print("  late / above tol / columns: " + ", ".join(
        f"{tol:g} {lt} / {ab} / {n}" for tol, (lt, ab, n) in totals.items()))


if __name__ == "__main__":
    main()
