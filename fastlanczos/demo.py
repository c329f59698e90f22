"""`python -m fastlanczos demo`: a Laplace posterior for a small CNN on scikit-learn's digits.

Train a CNN to the MAP of  sum_i l_i + (delta / 2) ||theta||^2  (SGD with L2 weight decay
delta / N on the mean loss is the same objective), then fit N(theta_map, A^{-1}) with
A = GGN + delta' I and predict with the linearized network (glm) and the probit link. The
prior precision delta' is chosen twice: by the Laplace marginal likelihood (log det by
stochastic Lanczos quadrature: one probe run on the GGN serves every delta') and by the
validation NLL of the predictive over a grid (all grid points' samples from one Lanczos run).
Both are scored against the MAP on the test digits and on the test digits rotated by 90
degrees (a distribution shift), with the AUROC of the predictive entropy between the two.
"""

import argparse
import time

import torch
from torch import nn

from .laplace import LaplacePosterior
from .laplace.metrics import auroc, classification_scores, predictive_entropy, reliability_bins

PRIOR_GRID = torch.logspace(-2, 4, 7).tolist()  # multiples of the training weight decay (decades)


def digits_cnn():
    """3.7k parameters: two 3x3 convolutions and two dense layers for 8x8 digits."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def digits_split(seed=0, device="cpu", dtype=torch.float32, train=0.6, val=0.15):
    """{"train", "val", "test"}: (images (N, 1, 8, 8) in [0, 1], labels), stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=dtype).unsqueeze(1) / 16
    y = torch.tensor(digits.target)
    idx = torch.arange(len(y)).numpy()
    tr, rest = train_test_split(idx, train_size=train, stratify=digits.target,
                                random_state=seed)
    va, te = train_test_split(rest, train_size=val / (1 - train),
                              stratify=digits.target[rest], random_state=seed)
    return {k: (x[i].to(device), y[i].to(device)) for k, i in
            (("train", tr), ("val", va), ("test", te))}


def progress(iterable, desc, total=None):
    """tqdm if installed, else a one-line counter on stderr."""
    try:
        from tqdm import tqdm
        return tqdm(iterable, desc=desc, total=total, leave=False)
    except ImportError:
        return _counter(iterable, desc, total)


def _counter(iterable, desc, total):
    import sys
    for i, item in enumerate(iterable):
        print(f"\r{desc}: {i + 1}/{total or '?'}", end="", file=sys.stderr, flush=True)
        yield item
    print(file=sys.stderr)


def train_map(net, x, y, delta, epochs, batch=64, lr=0.1, seed=0):
    """SGD with momentum on mean cross-entropy + (delta / N) / 2 ||theta||^2 (the summed MAP
    objective / N). Not Adam: its second moments of dead ReLU units decay into subnormal
    floats, and each epoch then took 20x longer on CPU (measured)."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=delta / len(y))
    g = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    for _ in progress(range(epochs), "training", epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch):
            idx = idx.to(x.device)
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def trained_digits_cnn(seed=0, epochs=20, weight_decay=1.0, device="cpu", dtype=torch.float32):
    """(net, data): the demo's CNN trained to its MAP on digits_split(seed); the same seeds
    give the same network in the demo and in benchmarks/compare_laplace.py."""
    torch.manual_seed(seed)
    data = digits_split(seed, device, dtype)
    net = train_map(digits_cnn().to(device, dtype), *data["train"], weight_decay, epochs,
                    seed=seed)
    return net, data


def save_reliability(path, curves, entropies):
    """Left: reliability diagram on the test set; right: predictive entropy histograms on the
    test (solid) and rotated (dashed) digits."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 4.2))
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    colors = {}
    for name, (probs, labels) in curves.items():
        conf, acc, count = reliability_bins(probs.double().cpu(), labels.cpu())
        keep = count > 0  # marker area ~ examples in the bin: near-empty bins are noise
        line, = ax.plot(conf[keep], acc[keep], "-", alpha=0.6, label=name)
        colors[name.split(" (")[0]] = line.get_color()
        ax.scatter(conf[keep], acc[keep], s=8 + 400 * count[keep] / count.sum(),
                   color=line.get_color())
    ax.set(xlabel="confidence", ylabel="accuracy", title="reliability (test)")
    ax.legend(loc="upper left", fontsize=8)
    top = max(float(h.max()) for pair in entropies.values() for h in pair)
    bins = torch.linspace(0, max(top, 1e-3), 31).numpy()
    for name, (inside, outside) in entropies.items():
        c = colors.get(name)
        bx.hist(inside.cpu().numpy(), bins, histtype="step", color=c, label=f"{name} test")
        bx.hist(outside.cpu().numpy(), bins, histtype="step", linestyle="--", color=c,
                label=f"{name} rotated")
    bx.set(xlabel="predictive entropy (nats)", ylabel="images",
           title="entropy: test (solid) vs rotated 90 deg (dashed)")
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rotated(x):
    """The digits turned by 90 degrees: the same pixels, an unseen distribution."""
    return torch.rot90(x, 1, dims=(2, 3))


def score(probs, labels, probs_rot):
    s = classification_scores(probs, labels)
    r = classification_scores(probs_rot, labels)
    s.update({f"rot_{k}": v for k, v in r.items()})
    s["auroc"] = auroc(predictive_entropy(probs), predictive_entropy(probs_rot))
    return s


def run(args):
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    t0 = time.perf_counter()
    net, data = trained_digits_cnn(args.seed, args.epochs, args.weight_decay, device, dtype)
    t_train = time.perf_counter() - t0
    n = sum(p.numel() for p in net.parameters())
    print(f"trained digits CNN ({n} parameters, {len(data['train'][1])} training images) "
          f"in {t_train:.1f} s on {device} ({args.dtype})")

    post = LaplacePosterior(net, nn.CrossEntropyLoss(), data["train"],
                            prior_precision=args.weight_decay)
    posts = {}
    if args.prior_precision is None:
        chosen = post.optimize_prior_precision(probes=args.probes, sketch=args.sketch,
                                               steps=args.probe_steps, seed=args.seed)
        info = chosen.optimize_info
        est = post.log_marginal_likelihood(info.prior_precision, probes=args.probes,
                                           sketch=args.sketch, steps=args.probe_steps,
                                           seed=args.seed)
        print(f"prior precision by marginal likelihood: {info.prior_precision:.4g} (log "
              f"marglik {est.value:.1f} +- {est.stderr:.2f}) in {info.seconds:.2f} s, "
              f"{info.products} block products ({args.probes} probes + {args.sketch} sketch "
              f"columns, {min(n, args.probe_steps)} Lanczos steps)")
        posts["Laplace marglik"] = chosen
        grid = [args.weight_decay * s for s in PRIOR_GRID]
        chosen = post.optimize_prior_precision(
            "gridsearch", val=data["val"], grid=grid, num_samples=args.grid_samples,
            steps=args.grid_steps, seed=args.seed)
        info = chosen.optimize_info
        print(f"prior precision by validation NLL (glm, probit) over {len(grid)} multiples "
              f"of the weight decay: {info.prior_precision:.4g} (NLL {info.objective:.4f}) in "
              f"{info.seconds:.2f} s, {info.products} block products (one Lanczos run for "
              f"the whole grid)")
        posts["Laplace val"] = chosen
    else:
        posts["Laplace"] = post.with_prior_precision(args.prior_precision)

    x_test, y_test = data["test"]
    x_rot = rotated(x_test)
    with torch.no_grad():
        probs = {"MAP": (net(x_test).softmax(-1), net(x_rot).softmax(-1))}
    for name, p in posts.items():
        t1 = time.perf_counter()
        samples, info = p.sample(args.samples, m=args.m, tol=args.tol, return_info=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_sample = time.perf_counter() - t1
        print(f"{name}: sampled {args.samples} parameter vectors in {t_sample:.2f} s "
              f"({args.samples / t_sample:.1f} samples/s): {info.products} block products "
              f"+ {info.preconditioner_products} sketch columns (Nystrom rank "
              f"{info.preconditioner_rank}), Lanczos steps per sample "
              f"{info.steps.float().mean().item():.1f} "
              f"(max {int(info.steps.max())}), converged {int(info.converged.sum())}/"
              f"{args.samples} at tol {args.tol:g}")
        probs[name] = (p.predictive(x_test, samples=samples),
                       p.predictive(x_rot, samples=samples))
    rows = {k: score(a, y_test, b) for k, (a, b) in probs.items()}
    print(f"\ntest set ({len(y_test)} images) and the same images rotated by 90 degrees; "
          f"predictive glm + probit; AUROC of the predictive entropy, test vs rotated")
    print(f"{'':16s}{'accuracy':>9s}{'NLL':>8s}{'ECE':>8s}{'Brier':>8s}   |{'rot acc':>8s}"
          f"{'rot NLL':>9s}{'rot ECE':>8s}   |{'AUROC':>7s}")
    for name, s in rows.items():
        print(f"{name:16s}{s['accuracy']:9.4f}{s['nll']:8.4f}{s['ece']:8.4f}{s['brier']:8.4f}"
              f"   |{s['rot_accuracy']:8.4f}{s['rot_nll']:9.4f}{s['rot_ece']:8.4f}"
              f"   |{s['auroc']:7.4f}")
    save_reliability(args.out,
                     {f"{k} (ECE {rows[k]['ece']:.3f})": (p[0], y_test) for k, p in probs.items()},
                     {k: (predictive_entropy(a), predictive_entropy(b))
                      for k, (a, b) in probs.items()})
    print(f"\nreliability diagram and entropy histograms: {args.out}; "
          f"total {time.perf_counter() - t0:.1f} s")
    return rows


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples", type=int, default=64, help="posterior samples for the test")
    p.add_argument("--grid-samples", type=int, default=16,
                   help="samples for the validation grid (shared by every grid point)")
    p.add_argument("--prior-precision", type=float, default=None,
                   help="skip choosing the prior and use this prior precision")
    # 16 + 16 probes and 30 steps: the chosen prior moved by < 2% against 32 + 32 and 80
    # steps (1.07 vs 1.08) at a quarter of the time (measured on this demo)
    p.add_argument("--probes", type=int, default=16, help="marglik: Rademacher probes")
    p.add_argument("--sketch", type=int, default=16, help="marglik: Hutch++ sketch columns")
    p.add_argument("--probe-steps", type=int, default=30, help="marglik: Lanczos steps")
    p.add_argument("--grid-steps", type=int, default=40,
                   help="gridsearch: Lanczos steps of the one run for all grid points")
    p.add_argument("--weight-decay", type=float, default=1.0,
                   help="training L2 on the summed loss (prior precision delta)")
    p.add_argument("--tol", type=float, default=1e-2, help="Lanczos relative tolerance")
    p.add_argument("--m", type=int, default=100, help="most Lanczos steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="demo_reliability.png", help="reliability diagram PNG")


def main(args):
    missing = [m for m in ("sklearn", "matplotlib") if not _importable(m)]
    if missing:
        print(f"the demo needs {', '.join(missing)}: pip install 'fastlanczos[demo]' "
              "(scikit-learn, matplotlib, tqdm)")
        return 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available")
        return 1
    run(args)
    return 0


def _importable(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None
