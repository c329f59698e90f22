"""fastlanczos vs laplace-torch: one trained digits CNN, Laplace with the GGN, in one run.

    PYTHONPATH=. python benchmarks/compare_laplace.py [--quick] [--skip-full] [--threads 1]
                                                      [--write]

The demo's CNN (fastlanczos.demo: same seed, epochs and weight decay, so the same network) is
trained once; then each method fits a Laplace posterior with the Gauss-Newton curvature over
all weights, chooses a scalar prior precision by its marginal likelihood and predicts with
the linearized network (glm) and the probit link:

  fastlanczos           LaplacePosterior(curvature="ggn", cache="auto"),
                        optimize_prior_precision("marglik") (log det by SLQ), predictive from
                        `sample(samples)` (Lanczos, default m and tol)
  laplace-torch full    Laplace(..., hessian_structure="full"): the dense n x n GGN
  laplace-torch kron    ... "kron": KFAC factors per layer
  laplace-torch diag    ... "diag": the GGN's diagonal
                        each with optimize_prior_precision(method="marglik", pred_type="glm",
                        link_approx="probit", prior_structure="scalar") and
                        la(x, pred_type="glm", link_approx="probit")

Scored on the test digits and the same digits rotated by 90 degrees (NLL, ECE, accuracy; AUROC
of the predictive entropy, test vs rotated), with wall times of fit, prior and predictive
(test + rotated) and the peak resident-memory growth of each method. Every method runs in a
fresh subprocess (so the memory peaks do not share an allocator) on the saved MAP weights.
Without laplace-torch (the `bench` extra) only the MAP and fastlanczos rows are run.
"""

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from report import PeakRSS, machine, write_section  # noqa: E402

from fastlanczos.demo import digits_cnn, digits_split, rotated, score, trained_digits_cnn  # noqa: E402,I001
from fastlanczos.laplace import LaplacePosterior  # noqa: E402

HERE = Path(__file__).parent
LAPLACE_TORCH = {"laplace-torch diag": "diag", "laplace-torch kron": "kron",
                 "laplace-torch full": "full"}
METHODS = ("fastlanczos", *LAPLACE_TORCH)
COLUMNS = [  # (key, header, format)
    ("prior", "prior", "{:.3g}"), ("accuracy", "acc", "{:.4f}"), ("nll", "NLL", "{:.4f}"),
    ("ece", "ECE", "{:.4f}"), ("rot_nll", "rot NLL", "{:.3f}"), ("rot_ece", "rot ECE", "{:.4f}"),
    ("auroc", "AUROC", "{:.4f}"), ("fit_s", "fit s", "{:.2f}"), ("prior_s", "prior s", "{:.2f}"),
    ("predict_s", "predict s", "{:.2f}"), ("total_s", "total s", "{:.2f}"),
    ("peak_mib", "peak MiB", "{:.0f}")]


def laplace_torch_missing():
    """None if laplace-torch imports here, else the reason (one line)."""
    if importlib.util.find_spec("laplace") is None:
        return "laplace-torch is not installed (pip install laplace-torch, the bench extra)"
    try:
        import laplace  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip it"
        return f"laplace-torch does not import: {type(exc).__name__}: {exc}".splitlines()[0]
    return None


# ---------------------------------------------------------------- the methods


def fastlanczos_laplace(net, train, test, cfg):
    """(prior, probs, probs_rot, seconds per phase) for fastlanczos' Laplace."""
    x, x_rot = test
    t0 = time.perf_counter()
    post = LaplacePosterior(net, nn.CrossEntropyLoss(), train, prior_precision=cfg.weight_decay)
    t1 = time.perf_counter()
    # the cached per-example Jacobians are formed at the first product: inside this phase
    post = post.optimize_prior_precision("marglik", probes=cfg.probes, sketch=cfg.sketch,
                                         steps=cfg.probe_steps, seed=cfg.seed)
    t2 = time.perf_counter()
    samples = post.sample(cfg.samples, generator=torch.Generator().manual_seed(cfg.seed))
    probs = post.predictive(x, samples=samples, link_approx="probit")
    probs_rot = post.predictive(x_rot, samples=samples, link_approx="probit")
    t3 = time.perf_counter()
    return post.optimize_info.prior_precision, probs, probs_rot, (t1 - t0, t2 - t1, t3 - t2)


def laplace_torch_laplace(structure):
    """The same for laplace-torch's Laplace with hessian_structure=structure (its default GGN
    backend), the training data in DataLoader batches of 64."""
    def run(net, train, test, cfg):
        from laplace import Laplace

        x, x_rot = test
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*train),
                                             batch_size=64)
        t0 = time.perf_counter()
        la = Laplace(net, "classification", subset_of_weights="all",
                     hessian_structure=structure, prior_precision=cfg.weight_decay)
        la.fit(loader)
        t1 = time.perf_counter()
        la.optimize_prior_precision(pred_type="glm", method="marglik", link_approx="probit",
                                    prior_structure="scalar", n_steps=cfg.marglik_steps)
        t2 = time.perf_counter()
        # in batches, as its docs loop over a test loader: on all 450 images at once its
        # jacrev held 16 GB (every output's cotangent through the whole batch, measured)
        probs, probs_rot = (torch.cat([la(b, pred_type="glm", link_approx="probit")
                                       for b in inputs.split(cfg.predict_batch)])
                            for inputs in (x, x_rot))
        t3 = time.perf_counter()
        return float(la.prior_precision), probs, probs_rot, (t1 - t0, t2 - t1, t3 - t2)
    return run


RUNS = {"fastlanczos": fastlanczos_laplace,
        **{name: laplace_torch_laplace(s) for name, s in LAPLACE_TORCH.items()}}


def run_method(name, net, data, cfg):
    """One table row: the prior, the scores, the seconds per phase and the peak memory."""
    train = data["train"] if cfg.fit_examples is None else \
        tuple(t[:cfg.fit_examples] for t in data["train"])
    x, y = data["test"]
    with PeakRSS() as mem:
        prior, probs, probs_rot, (fit, chosen, predict) = RUNS[name](
            copy.deepcopy(net), train, (x, rotated(x)), cfg)
    row = {k: float(v) for k, v in score(probs.detach(), y, probs_rot.detach()).items()}
    row.update(prior=float(prior), fit_s=fit, prior_s=chosen, predict_s=predict,
               total_s=fit + chosen + predict, peak_mib=mem.mib)
    return row


def map_row(net, data):
    x, y = data["test"]
    with torch.no_grad():
        row = score(net(x).softmax(-1), y, net(rotated(x)).softmax(-1))
    return {k: float(v) for k, v in row.items()}


# ---------------------------------------------------------------- the run


def compare(cfg, isolate=True, log=print):
    """{row name: row}: MAP, then every method in cfg.methods that can run here (each in a
    fresh subprocess when isolate, else in this process)."""
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    net, data = trained_digits_cnn(cfg.seed, cfg.epochs, cfg.weight_decay)
    n = sum(p.numel() for p in net.parameters())
    log(f"trained digits CNN ({n} parameters, {len(data['train'][1])} training images, "
        f"{cfg.epochs} epochs) in {time.perf_counter() - t0:.1f} s")
    rows = {"MAP": map_row(net, data)}
    reason = laplace_torch_missing()
    methods = list(cfg.methods)
    if reason and any(m in LAPLACE_TORCH for m in methods):
        log(f"{reason}: running the MAP and fastlanczos rows only")
        methods = [m for m in methods if m not in LAPLACE_TORCH]
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "map.pt"
        torch.save(net.state_dict(), state)
        for name in methods:
            log(f"{name} ...")
            rows[name] = in_subprocess(name, state, cfg, Path(tmp)) if isolate else \
                run_method(name, net, data, cfg)
            log(f"{name}: prior {rows[name]['prior']:.4g}, {rows[name]['total_s']:.1f} s")
    return rows


def in_subprocess(name, state, cfg, tmp):
    out = tmp / "row.json"
    argv = [sys.executable, __file__, "--worker", name, "--state", str(state), "--row", str(out)]
    for k in WORKER_OPTIONS:
        v = getattr(cfg, k)
        if v is True:
            argv.append(f"--{k.replace('_', '-')}")
        elif v is not None and v is not False:
            argv.append(f"--{k.replace('_', '-')}={v}")
    subprocess.run(argv, check=True)  # a failing method stops the run: its traceback shows
    return json.loads(out.read_text())


def worker(cfg):
    """A subprocess's one method on the saved MAP weights."""
    torch.set_num_threads(cfg.threads)
    net = digits_cnn()
    net.load_state_dict(torch.load(cfg.state))
    row = run_method(cfg.worker, net.eval(), digits_split(cfg.seed), cfg)
    Path(cfg.row).write_text(json.dumps(row))


# ---------------------------------------------------------------- tables


def table(rows, markdown=False):
    names = [h for _, h, _ in COLUMNS]
    lines = []
    if markdown:
        lines += ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    else:
        lines.append(f"{'':20s}" + "".join(f"{h:>10s}" for h in names))
    for name, row in rows.items():
        cells = [fmt.format(row[k]) if k in row else "-" for k, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |" if markdown else
                     f"{name:20s}" + "".join(f"{c:>10s}" for c in cells))
    return "\n".join(lines)


def protocol(cfg, seconds):
    return (
        f"Machine: {machine()}; {cfg.threads} thread(s) for torch in every method. Command: "
        f"`PYTHONPATH=. python benchmarks/compare_laplace.py{' --quick' if cfg.quick else ''}"
        f"{' --skip-full' if 'laplace-torch full' not in cfg.methods else ''} --threads "
        f"{cfg.threads} --write` ({seconds / 60:.1f} min for everything below).\n\n"
        f"Protocol: the demo's CNN (seed {cfg.seed}, {cfg.epochs} epochs, weight decay "
        f"{cfg.weight_decay:g}, float32) trained once; each method then runs in a fresh "
        f"subprocess on the saved weights: Laplace over all weights with the GGN of the "
        f"summed cross-entropy, a scalar prior precision by the method's marginal likelihood "
        f"(fastlanczos: SLQ with {cfg.probes} probes + {cfg.sketch} sketch columns, "
        f"{cfg.probe_steps} steps; laplace-torch: {cfg.marglik_steps} Adam steps on log delta, "
        f"prior_structure='scalar'), glm predictive with the probit link (fastlanczos: "
        f"{cfg.samples} Lanczos samples at the default m and tol, shared by the test and "
        f"rotated predictions). laplace-torch {_version('laplace-torch')} with its default "
        f"backend (CurvlinopsGGN, curvlinops-for-pytorch {_version('curvlinops-for-pytorch')}: "
        f"full = the dense GGN from products with identity columns per batch, kron = KFAC "
        f"type-2, diag = the exact diagonal from per-example Jacobians). fit = building the "
        f"posterior (fastlanczos' cached Jacobians are formed at its first product, inside "
        f"prior); predict = the test and the rotated predictions. Times are single runs. "
        f"peak MiB = peak resident-memory growth of the method's process over fit + prior + "
        f"predict. laplace-torch predicts in batches of {cfg.predict_batch} images. Test set: "
        f"{cfg.test_size} images; AUROC of the predictive entropy, test vs "
        f"rotated by 90 degrees.")


def _version(dist):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "(not installed)"


# ---------------------------------------------------------------- command line

WORKER_OPTIONS = ("threads", "seed", "epochs", "weight_decay", "probes", "sketch",
                  "probe_steps", "samples", "marglik_steps", "fit_examples", "predict_batch",
                  "quick")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 6 epochs, 256 images for the fit, few probes and samples")
    p.add_argument("--skip-full", action="store_true", help="no laplace-torch full GGN (slow)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="default 20 (the demo's), quick 6")
    p.add_argument("--weight-decay", type=float, default=1.0)
    p.add_argument("--probes", type=int, default=None, help="default 32, quick 6")
    p.add_argument("--sketch", type=int, default=None, help="default 32, quick 6")
    p.add_argument("--probe-steps", type=int, default=None, help="default 80, quick 10")
    p.add_argument("--samples", type=int, default=None, help="default 32, quick 8")
    p.add_argument("--marglik-steps", type=int, default=None,
                   help="laplace-torch's Adam steps, default 100 (its own), quick 20")
    p.add_argument("--fit-examples", type=int, default=None,
                   help="training images for the posterior (default all, quick 256)")
    p.add_argument("--predict-batch", type=int, default=64,
                   help="laplace-torch's predictive: test images per call")
    p.add_argument("--write", action="store_true",
                   help="write the compare_laplace section of benchmarks/RESULTS-cpu.md")
    p.add_argument("--section", default="compare_laplace", help="its name in RESULTS-cpu.md")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--state", help=argparse.SUPPRESS)
    p.add_argument("--row", help=argparse.SUPPRESS)
    cfg = p.parse_args(argv)
    # defaults: the library's own (fastlanczos' marglik and predictive, laplace-torch's
    # marglik steps), so each method runs as a user would call it
    full = dict(epochs=20, probes=32, sketch=32, probe_steps=80, samples=32, marglik_steps=100,
                fit_examples=None)
    quick = dict(epochs=6, probes=6, sketch=6, probe_steps=10, samples=8, marglik_steps=20,
                 fit_examples=256)
    for k, v in (quick if cfg.quick else full).items():
        if getattr(cfg, k) is None:
            setattr(cfg, k, v)
    if cfg.methods is None:
        cfg.methods = [m for m in METHODS if not (cfg.skip_full and m == "laplace-torch full")]
    cfg.test_size = None
    return cfg


def main(argv=None):
    cfg = parse(argv)
    if cfg.worker:
        worker(cfg)
        return 0
    t0 = time.perf_counter()
    rows = compare(cfg)
    cfg.test_size = len(digits_split(cfg.seed)["test"][1])
    seconds = time.perf_counter() - t0
    print(f"\n{machine()}\n")
    print(table(rows))
    print("\n" + table(rows, markdown=True))
    if cfg.write:
        text = ("## fastlanczos vs laplace-torch: Laplace for the digits CNN\n\n"
                f"{protocol(cfg, seconds)}\n\n{table(rows, markdown=True)}\n")
        write_section(HERE / "RESULTS-cpu.md", cfg.section, text)
        print(f"\nwrote the {cfg.section} section of {HERE / 'RESULTS-cpu.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
