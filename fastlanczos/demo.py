"""`python -m fastlanczos demo`: a Laplace posterior for a small CNN on scikit-learn's digits.

Train a CNN to the MAP of  sum_i l_i + (delta / 2) ||theta||^2  (SGD with L2 weight decay
delta / N on the mean loss is the same objective), then sample N(theta_map, A^{-1}) with
A = GGN + delta' I. The prior precision delta' is picked from a small grid (100, 1000 and
10000 times the training delta) by the validation NLL of the Laplace predictive: the
Monte-Carlo predictive of a full network is badly under-confident at the training delta
(weakly determined directions get variance 1/delta and move the ReLU units; measured:
validation accuracy 10% at delta' = 1, 49% at 10, 98% at 100). The grid points share one
cached curvature, so each costs only its Lanczos run.
"""

import argparse
import time

import torch
from torch import nn

from .laplace import LaplacePosterior
from .laplace.metrics import classification_scores, reliability_bins

PRIOR_GRID = (100.0, 1000.0, 10000.0)


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


def pick_prior(post, data, deltas, samples, tol, m):
    """The prior precision in `deltas` with the best validation NLL of the predictive; every
    grid point shares the posterior's curvature (cached Jacobians), only the shift changes."""
    scores = []
    for delta in progress(deltas, "prior grid", len(deltas)):
        probs = post.with_prior_precision(delta).predictive(
            data["val"][0], num_samples=samples, m=m, tol=tol)
        scores.append((classification_scores(probs, data["val"][1])["nll"], delta))
    return min(scores)[1], scores


def save_reliability(path, curves):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    for name, (probs, labels) in curves.items():
        conf, acc, count = reliability_bins(probs.double().cpu(), labels.cpu())
        keep = count > 0  # marker area ~ examples in the bin: near-empty bins are noise
        line, = ax.plot(conf[keep], acc[keep], "-", alpha=0.6, label=name)
        ax.scatter(conf[keep], acc[keep], s=8 + 400 * count[keep] / count.sum(),
                   color=line.get_color())
    ax.set(xlabel="confidence", ylabel="accuracy", title="digits CNN: reliability (test)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args):
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    data = digits_split(args.seed, device, dtype)
    net = train_map(digits_cnn().to(device, dtype), *data["train"], args.weight_decay,
                    args.epochs, seed=args.seed)
    t_train = time.perf_counter() - t0
    n = sum(p.numel() for p in net.parameters())
    print(f"trained digits CNN ({n} parameters, {len(data['train'][1])} training images) "
          f"in {t_train:.1f} s on {device} ({args.dtype})")

    post = LaplacePosterior(net, nn.CrossEntropyLoss(), data["train"],
                            prior_precision=args.weight_decay)
    if args.prior_precision is None:
        grid = [args.weight_decay * s for s in PRIOR_GRID]
        prior, scores = pick_prior(post, data, grid, args.grid_samples, args.tol, args.m)
        print("prior precision by validation NLL of the Laplace predictive over multiples of "
              "the training weight decay: " + ", ".join(f"{d:g}: {s:.4f}" for s, d in scores)
              + f" -> {prior:g}")
    else:
        prior = args.prior_precision
    post = post.with_prior_precision(prior)
    post.diagonal()  # the preconditioner: one sweep, kept out of the sampling rate
    t1 = time.perf_counter()
    samples, info = post.sample(args.samples, m=args.m, tol=args.tol, return_info=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_sample = time.perf_counter() - t1

    x_test, y_test = data["test"]
    with torch.no_grad():
        map_probs = net(x_test).softmax(-1)
    lap_probs = post.predictive(x_test, samples=samples)
    rows = {"MAP": classification_scores(map_probs, y_test),
            "Laplace": classification_scores(lap_probs, y_test)}
    print(f"\nsampled {args.samples} parameter vectors in {t_sample:.2f} s "
          f"({args.samples / t_sample:.1f} samples/s): {info.products} block products "
          f"(one data sweep each, all samples together), Lanczos steps per sample "
          f"{info.steps.float().mean().item():.1f} (max {int(info.steps.max())}), "
          f"converged {int(info.converged.sum())}/{args.samples} at tol {args.tol:g}")
    print(f"\nheld-out test set ({len(y_test)} images)")
    print(f"{'':10s}{'accuracy':>10s}{'NLL':>10s}{'ECE':>10s}{'Brier':>10s}")
    for name, s in rows.items():
        print(f"{name:10s}{s['accuracy']:10.4f}{s['nll']:10.4f}{s['ece']:10.4f}"
              f"{s['brier']:10.4f}")
    save_reliability(args.out, {f"{k} (ECE {rows[k]['ece']:.3f})": (p, y_test) for k, p in
                                (("MAP", map_probs), ("Laplace", lap_probs))})
    print(f"\nreliability diagram: {args.out}; total {time.perf_counter() - t0:.1f} s")
    return rows


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples", type=int, default=64, help="posterior samples for the test")
    p.add_argument("--grid-samples", type=int, default=16,
                   help="samples per prior-precision grid point")
    p.add_argument("--prior-precision", type=float, default=None,
                   help="skip the grid and use this prior precision")
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
