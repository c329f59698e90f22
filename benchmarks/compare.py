"""fastlanczos against the alternatives, on the same operators, in one run.

    PYTHONPATH=. python benchmarks/compare.py [--quick] [--ops dense wishart fisher cnn]
                                              [--device cuda]

For each operator, k = 1 and k = 32 right-hand sides, float64 and float32, and each method's
own accuracy knob: the relative error of A^{-1/2} Z against float64 dense eigh (worst column),
wall time, operator products (single-vector columns) and peak resident-memory growth. Each
sweep stops once the method reaches the tight target or stops improving. Writes the "compare"
section of benchmarks/RESULTS-cpu.md and benchmarks/compare_error_vs_time.png (with --device
cuda: RESULTS-gpu.md and compare_error_vs_time_gpu.png).

Times at equal accuracy: for every method, the fastest run whose error is at or below the
target (1e-6 in float64, 1e-3 in float32); the ratio is fastlanczos / best peer (below 1:
fastlanczos is faster). Peers that are not installed are skipped with a message.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import peers  # noqa: E402
from report import PeakRSS, machine, median_time, write_section  # noqa: E402

import fastlanczos as fl  # noqa: E402

HERE = Path(__file__).parent
TARGET = {torch.float64: 1e-6, torch.float32: 1e-3}
STEPS = [8, 16, 32, 64, 128, 256, 512, 1024]
CIQ = [(8, 1e-3), (15, 1e-4), (15, 1e-6), (20, 1e-8), (30, 1e-10), (40, 1e-12)]
SLOW_S = 30.0  # a sweep stops after a run this slow
CAP_S = 60.0  # ... or before a run predicted to take longer (time ~ m^1.5 from the last one)
METHODS = {  # name: (run, knobs, is ours)
    "fastlanczos": (peers.fastlanczos_run, STEPS, True),
    "fastlanczos (torch path)": (lambda op, Z, m: peers.fastlanczos_run(op, Z, m, "torch"),
                                 STEPS, True),
    "dense eigh": (peers.dense_eigh_run, [None], False),
    "paper loop (SciPy/NumPy)": (peers.paper_lanczos_run, STEPS, False),
    "gpytorch CIQ": (peers.gpytorch_ciq_run, CIQ, False),
    "matfree (JAX)": (peers.matfree_run, STEPS, False),
}


# ---------------------------------------------------------------- operators


def spectrum_operator(n, kappa, device, seed=0):
    """Q diag(lam) Q^T, lam log-uniform on [1/kappa, 1], Q Haar-random orthogonal."""
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    Q = Q * R.diagonal().sign()
    lam = torch.logspace(-math.log10(kappa), 0, n, dtype=torch.float64)
    A = (Q * lam) @ Q.T
    A = (A + A.T) / 2
    return dense_op(f"dense spectrum (kappa {kappa:.0e}, n {n})", A, device)


def wishart_operator(n, device, seed=0):
    """The paper's random SPD test: G G^T / n + 1e-3 I."""
    A = peers.wishart(n, torch.Generator().manual_seed(seed))
    return dense_op(f"Wishart G G^T/n + 1e-3 I (n {n})", A, device)


def dense_op(name, A, device):
    """The product on `device`; the float64 reference stays on the CPU."""
    As = {torch.float64: A.to(device), torch.float32: A.float().to(device)}
    return peers.Operator(name, A.shape[0], lambda V: V @ As[V.dtype], lambda: A)


def model_operator(name, make_model, x, y, prior, epochs, device):
    """GGN of summed cross-entropy at a briefly trained model (trained on the CPU), plus
    prior * I, in both dtypes (the float32 product from a float32 copy of the same weights),
    evaluated on `device`."""
    from fastlanczos.demo import train_map
    from fastlanczos.laplace import with_prior

    torch.manual_seed(0)
    net = train_map(make_model(), x, y, prior, epochs)
    loss = nn.CrossEntropyLoss(reduction="sum")
    blocks = {}
    x, y = x.to(device), y.to(device)
    for dtype in (torch.float64, torch.float32):
        # Per-example Jacobians cached after the first sweep: every method then gets the same
        # cheap product (two matmuls), so the comparison is about the solvers.
        ggn = fl.ggn_vp(_copy(net, dtype, device), loss, (x.to(dtype), y), method="jacobian",
                        cache=True)
        ggn(torch.zeros(1, sum(p.numel() for p in net.parameters()), dtype=dtype,
                        device=device))
        blocks[dtype] = with_prior(ggn, prior)
    n = sum(p.numel() for p in net.parameters())
    dense = {}

    def dense64():
        if not dense:
            dense["A"] = peers.materialize(blocks[torch.float64], n, device=device).cpu()
        return dense["A"]

    return peers.Operator(f"{name} ({n} parameters)", n, lambda V: blocks[V.dtype](V), dense64,
                          model=(_copy(net, torch.float32, device), x, y, prior))


def _copy(net, dtype, device):
    import copy

    return copy.deepcopy(net).to(device, dtype).eval()


def digits():
    from fastlanczos.demo import digits_split

    return digits_split(0)["train"]


def fisher_operator(device):
    x, y = digits()
    return model_operator("Fisher, logistic regression on digits + 1.0 I",
                          lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), x, y, 1.0, 20,
                          device)


def cnn_operator(device):
    from fastlanczos.demo import digits_cnn

    x, y = digits()
    return model_operator("GGN, digits CNN + 1.0 I", digits_cnn, x, y, 1.0, 20, device)


OPERATORS = {
    "dense": lambda quick, dev: spectrum_operator(1000 if quick else 4000, 1e4, dev),
    "wishart": lambda quick, dev: wishart_operator(1000, dev),
    "fisher": lambda quick, dev: fisher_operator(dev),
    "cnn": lambda quick, dev: cnn_operator(dev),
}


# ---------------------------------------------------------------- measuring


class Reference:
    """float64 eigh of A once per operator; x* = A^{-1/2} Z for any Z."""

    def __init__(self, op):
        t0 = time.perf_counter()
        self.lam, self.Q = torch.linalg.eigh(op.dense64())
        self.seconds = time.perf_counter() - t0
        self.kappa = float(self.lam.max() / self.lam.min())

    def __call__(self, Z):
        return peers.inv_sqrt_from_eigh(self.lam, self.Q, Z.double().cpu())

    def error(self, X, Z):
        ref = self(Z)
        return float(((X.double().cpu() - ref).norm(dim=1) / ref.norm(dim=1)).max())


def measure(run, op, Z, knob, ref, reps):
    last = []  # the Counter of the latest run: products per run, however many runs there were

    def counted_run():
        last[:] = [peers.Counter(op.block)]
        return run(peers.Operator(op.name, op.n, last[0], op.dense64, op.model), Z, knob)

    with PeakRSS(Z.device) as mem:
        seconds, X = median_time(counted_run, reps=reps, slow_s=2.0)
    return {"knob": knob, "error": ref.error(X, Z), "seconds": seconds,
            "columns": last[0].columns, "peak_mib": mem.mib}


def sweep(name, run, knobs, op, Z, ref, target, reps):
    rows, best = [], math.inf
    for knob in knobs:
        if isinstance(knob, int) and knob > op.n:
            break
        if isinstance(knob, int) and rows and \
                rows[-1]["seconds"] * (knob / rows[-1]["knob"]) ** 1.5 > CAP_S:
            print(f"    {name:26s} {fmt_knob(knob):>14s} skipped: predicted over {CAP_S:.0f} s")
            rows.append({"knob": knob, "capped": True})
            break
        try:
            row = measure(run, op, Z, knob, ref, reps)
        except Exception as exc:  # noqa: BLE001 - a peer failing is a result, not a crash
            print(f"    {name} {knob}: failed: {type(exc).__name__}: {exc}".splitlines()[0])
            break
        if name.startswith("matfree") and op.model is None:
            row["columns"] = knob * Z.shape[0]  # the products run inside JAX, uncounted
        rows.append(row)
        print(f"    {name:26s} {fmt_knob(knob):>14s} err {row['error']:9.2e} "
              f"{row['seconds']:9.4f} s {row['columns']:7d} products {row['peak_mib']:8.1f} MiB",
              flush=True)
        stalled = isinstance(knob, int) and row["error"] > 0.999 * best  # a dtype's floor
        if row["error"] <= target or row["seconds"] > SLOW_S or stalled:
            break
        best = row["error"]
    return rows


def fmt_knob(knob):
    if knob is None:
        return "-"
    if isinstance(knob, tuple):
        return f"Q={knob[0]},tol={knob[1]:.0e}"
    return f"m={knob}"


def measured(rows):
    return [r for r in rows if not r.get("capped")]


def time_at_target(rows, target):
    hits = [r for r in measured(rows) if r["error"] <= target]
    return min(hits, key=lambda r: r["seconds"]) if hits else None


# ---------------------------------------------------------------- laplace-torch


def laplace_rows(op, ks, ref, reps):
    """laplace-torch's full-GGN sampler (fit once, then k samples) next to fastlanczos drawing
    k samples at the float32 target, both in float32 (laplace-torch's usual dtype)."""
    model, x, y, prior = op.model
    device = x.device
    with PeakRSS(device) as mem:
        fit_s, la = median_time(lambda: peers.laplace_torch_fit(op), reps=reps, slow_s=2.0)
    A = op.dense64()
    agree = float((la.posterior_precision.double().cpu() - A).norm() / A.norm())
    rows = {}
    for k in ks:
        sample_s, _ = median_time(lambda: peers.laplace_torch_sample(la, k), reps=reps)
        Z = torch.randn(k, op.n, device=device)
        ours = None
        for m in STEPS:
            row = measure(peers.fastlanczos_run, op, Z, m, ref, reps)
            if row["error"] <= TARGET[torch.float32]:
                ours = row
                break
        rows[k] = {"laplace_s": fit_s + sample_s, "laplace_mib": mem.mib,
                   "precision_rel_diff": agree, "ours": ours}
        print(f"  laplace-torch k={k}: fit {fit_s:.2f} s + sample {sample_s:.3f} s, "
              f"{mem.mib:.0f} MiB; fastlanczos {ours['seconds'] if ours else None} s")
    return rows


# ---------------------------------------------------------------- report


def tables(results, lap, missing, args, png):
    out = [f"Machine: {machine(args.device)}.", "",
           "Protocol: `PYTHONPATH=. python benchmarks/compare.py"
           + (" --quick" if args.quick else "")
           + (f" --device {args.device}" if args.device != "cpu" else "")
           + "`. Each point is the median of "
           f"{args.reps} timed runs after one warm-up run (runs over 2 s: the warm-up run "
           "alone). Error: worst column's ||x - x*|| / ||x*||, x* from float64 "
           "torch.linalg.eigh. Products: single-vector operator products (columns) per run; "
           "matfree's dense products happen inside JAX and are given as m x k. Peak memory: "
           "growth of the process's resident set during the runs, sampled every 1 ms "
           "(includes JAX's compilation in its warm-up); on a GPU, the growth of torch's peak "
           "allocated device memory (JAX and NumPy then do not show). Equal accuracy: each "
           "method's "
           "fastest run at or below the target (float64: 1e-6, float32: 1e-3). A sweep over a "
           "method's knob stops at the target, when a larger m no longer lowers the error "
           f"(the dtype's floor), after a run over {SLOW_S:.0f} s, or before a run predicted "
           f"(time ~ m^1.5) to exceed {CAP_S:.0f} s.", "",
           "Settings: fastlanczos fixed m, full CGS2 reorthogonalization (compiled C++ "
           "extension; `FASTLANCZOS_BACKEND=torch` for the pure-torch path). GPyTorch: "
           "linear_operator `sqrt_inv_matmul` (contour integral quadrature with multi-shift "
           "MINRES), knob (Q = settings.num_contour_quadrature, tol = "
           "settings.minres_tolerance), settings.max_cg_iterations = n. matfree: "
           "`funm_lanczos_sym(dense_funm_sym_eigh(x^-1/2), tridiag_sym(m, reortho='full'))`, "
           "vmapped over columns, jit-compiled, JAX on CPU; model operators reach torch by "
           "`jax.pure_callback`. Paper loop: SciPy LinearOperator around the torch product, "
           "NumPy Lanczos one vector at a time, reorthogonalization when an overlap exceeds "
           "orthtol = 1e-5 (written from the paper's description). Dense eigh: materialize A "
           "(model operators: n products), torch.linalg.eigh, apply.", ""]
    if missing:
        out += ["Skipped (not installed): "
                + "; ".join(f"{k} ({v})" for k, v in missing.items()) + ".", ""]
    out += ["### Time to reach the accuracy target (seconds; ratio = fastlanczos / best peer)",
            "", "| operator | dtype | k | " + " | ".join(results["methods"])
            + " | best peer | ratio |",
            "|---|---|---|" + "---|" * (len(results["methods"]) + 2)]
    for (opname, dtype, k), per in results["runs"].items():
        target = TARGET[dtype]
        hit = {m: time_at_target(rows, target) for m, rows in per.items()}
        cells = [f"{h['seconds']:.3g}" if h else miss(per.get(m)) for m, h in
                 ((m, hit.get(m)) for m in results["methods"])]
        peer_hits = {m: h for m, h in hit.items() if h and not METHODS[m][2]}
        best = min(peer_hits.items(), key=lambda kv: kv[1]["seconds"]) if peer_hits else None
        ours = hit.get("fastlanczos")
        ratio = f"{ours['seconds'] / best[1]['seconds']:.3g}" if ours and best else "n/a"
        out.append(f"| {opname} | {str(dtype)[6:]} | {k} | " + " | ".join(cells)
                   + f" | {best[0] if best else '-'} | {ratio} |")
    if lap:
        out += ["", "### Sampling: laplace-torch full-GGN Laplace vs fastlanczos (float32)", "",
                "laplace-torch: `Laplace(model, 'classification', subset_of_weights='all', "
                "hessian_structure='full', prior_precision=1.0)`, `fit` over DataLoader "
                "batches of 64 (timed once) plus `sample(k)` (forms the n x n GGN, Cholesky). "
                "fastlanczos: A^{-1/2} Z at the float32 "
                "target (GGN closure with cached Jacobians, built before timing). Both sample "
                "N(theta, A^{-1}) with the same A (precision difference shown); their "
                "samples differ pointwise (Cholesky factor vs symmetric root), so only times "
                "compare.", "",
                "| operator | k | laplace-torch s | peak MiB | fastlanczos s | m | peak MiB | "
                "ratio | rel. diff. of precisions |", "|---|---|---|---|---|---|---|---|---|"]
        for (opname, k), r in lap.items():
            o = r["ours"]
            ours = (f"{o['seconds']:.3g} | {o['knob']} | {o['peak_mib']:.0f}" if o
                    else "not reached | - | -")
            ratio = f"{o['seconds'] / r['laplace_s']:.3g}" if o else "n/a"
            out.append(f"| {opname} | {k} | {r['laplace_s']:.3g} | {r['laplace_mib']:.0f} | "
                       f"{ours} | {ratio} | {r['precision_rel_diff']:.1e} |")
    out += ["", "### All runs", "", "| operator | dtype | k | method | knob | error | seconds "
            "| products | peak MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for (opname, dtype, k), per in results["runs"].items():
        for method, rows in per.items():
            for r in measured(rows):
                out.append(f"| {opname} | {str(dtype)[6:]} | {k} | {method} | "
                           f"{fmt_knob(r['knob'])} | {r['error']:.2e} | {r['seconds']:.4g} | "
                           f"{r['columns']} | {r['peak_mib']:.0f} |")
    out += ["", f"![error vs time]({png})"]
    return "\n".join(out)


def save(path, done, results, lap):
    """The raw numbers, after each operator: --resume continues from them after a crash."""
    data = {"done": done, "methods": results["methods"],
            "runs": [[op, str(dt)[6:], k, per] for (op, dt, k), per in results["runs"].items()],
            "lap": [[op, k, r] for (op, k), r in lap.items()]}
    path.write_text(json.dumps(data, indent=0))


def load(path):
    data = json.loads(path.read_text())
    runs = {}  # JSON turned the CIQ knobs (Q, tol) into lists
    for op, dt, k, per in data["runs"]:
        runs[(op, getattr(torch, dt), k)] = {
            m: [dict(r, knob=tuple(r["knob"]) if isinstance(r["knob"], list) else r["knob"])
                for r in rows] for m, rows in per.items()}
    lap = {(op, k): r for op, k, r in data["lap"]}
    return data["done"], {"methods": data["methods"], "runs": runs}, lap


def miss(rows):
    """Why a method has no time at the target: it stalled above it, or hit the time cap."""
    if not rows:
        return "-"
    if rows[-1].get("capped"):
        return f"> {CAP_S:.0f} s (m={rows[-1]['knob']} predicted)"
    return "not reached"


def plot(results, path):
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results["runs"])
    ops = list(dict.fromkeys(k[0] for k in keys))
    cols = list(dict.fromkeys((k[1], k[2]) for k in keys))
    fig, axes = plt.subplots(len(ops), len(cols), figsize=(4 * len(cols), 3.2 * len(ops)),
                             squeeze=False)
    for (opname, dtype, k), per in results["runs"].items():
        ax = axes[ops.index(opname)][cols.index((dtype, k))]
        for method, rows in per.items():
            rows = measured(rows)
            if rows:
                ax.loglog([r["seconds"] for r in rows], [max(r["error"], 1e-17) for r in rows],
                          "o-" if METHODS[method][2] else "s--", label=method, ms=3)
        ax.axhline(TARGET[dtype], color="grey", lw=0.5)
        ax.set_title(f"{opname[:38]}\n{str(dtype)[6:]}, k={k}", fontsize=7)
        ax.set_xlabel("seconds", fontsize=7)
        ax.set_ylabel("relative error", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded labels
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, k = 1 and 4, float64")
    p.add_argument("--ops", nargs="+", choices=list(OPERATORS), default=list(OPERATORS))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu or cuda (JAX stays on the CPU)")
    p.add_argument("--resume", action="store_true",
                   help="keep the operators already in benchmarks/compare-<device>.json "
                   "(with all of them there: just rewrite the tables and the plot)")
    p.add_argument("--out", help="default: benchmarks/RESULTS-cpu.md, or RESULTS-gpu.md on cuda")
    args = p.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.out = args.out or str(HERE / ("RESULTS-gpu.md" if gpu else "RESULTS-cpu.md"))
    png = HERE / ("compare_error_vs_time_gpu.png" if gpu else "compare_error_vs_time.png")
    missing = peers.missing()
    for name, why in missing.items():
        print(f"skipping {name}: not importable ({why}); install the 'bench' extra")
    methods = [m for m in METHODS if m not in missing]
    ks = (1, 4) if args.quick else (1, 32)
    dtypes = (torch.float64,) if args.quick else (torch.float64, torch.float32)
    print(machine(args.device))
    store = HERE / f"compare-{device.type}{'-quick' if args.quick else ''}.json"
    done, results, lap = [], {"methods": methods, "runs": {}}, {}
    if args.resume and store.exists():
        done, results, lap = load(store)
    for opkey in args.ops:
        if opkey in done:
            print(f"\n{opkey}: kept from {store.name}")
            continue
        op = OPERATORS[opkey](args.quick, device)
        ref = Reference(op)
        print(f"\n{op.name}: kappa {ref.kappa:.2e}, reference eigh {ref.seconds:.2f} s")
        g = torch.Generator().manual_seed(1)
        Z64 = torch.randn(max(ks), op.n, generator=g, dtype=torch.float64)
        for dtype in dtypes:
            for k in ks:
                print(f"  {str(dtype)[6:]}, k = {k}")
                Z = Z64[:k].to(device, dtype)
                per = results["runs"][(op.name, dtype, k)] = {}
                for method in methods:
                    run, knobs, _ = METHODS[method]
                    per[method] = sweep(method, run, knobs, op, Z, ref, TARGET[dtype],
                                        args.reps)
        if op.model is not None and "laplace-torch" not in missing:
            try:
                for k, row in laplace_rows(op, ks, ref, args.reps).items():
                    lap[(op.name, k)] = row
            except Exception as exc:  # noqa: BLE001 - report, do not crash
                print(f"  laplace-torch failed: {type(exc).__name__}: {exc}")
        done.append(opkey)
        save(store, done, results, lap)  # a crash later keeps the operators done so far
    text = tables(results, lap, missing, args, png.name)
    print("\n" + text)
    if not args.quick:
        write_section(args.out, "compare", "## fastlanczos vs the alternatives\n\n" + text)
        plot(results, png)
        print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
