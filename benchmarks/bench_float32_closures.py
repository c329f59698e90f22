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
networks and tolerances in float64. --families: five networks of other kinds instead
(tanh MLP / cross-entropy, ReLU MLP / MSE, GELU MLP / BCE-with-logits, a CNN / cross-entropy
(mean), a tanh MLP / Poisson), trained for 300 Adam steps, with priors 1e-5, 1e-3 and 1e-1
times ||A||: a prior far under the GGN's smallest eigenvalue (full rank) is a loose bound.
Their oracles come from one basis of up to 400 steps (the same recurrence as the fixed-m runs).
--unseen-families: five more, chosen after the stop was (a LayerNorm SiLU MLP / cross-entropy,
a one-layer self-attention classifier / cross-entropy, a tanh RNN / MSE, a BatchNorm CNN in
eval mode / cross-entropy, a deep ReLU MLP / Huber with 3 outputs), the same priors; in
float64 at the issue's tolerances 1e-3, 1e-6, 1e-9 too. --loose: tolerances 0.3, 0.2, 0.1, 0.05
instead (far from convergence, where both estimates take a larger margin: krylov/stopping.py).

    PYTHONPATH=. python benchmarks/bench_float32_closures.py [--threads 1] [--float64]
        [--families | --unseen-families] [--loose]
"""

import argparse
import math
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_stopping_sweep import summary  # noqa: E402
from conftest import DENSE_FNS, dense_funm, error_curve  # noqa: E402
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


def family_networks():
    """(name, network maker, loss, x, y) of the five --families networks."""
    g = torch.Generator().manual_seed(5)
    nn = torch.nn
    x = torch.randn(300, 10, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    yield ("tanh MLP, CE", lambda: nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 16),
                                                 nn.Tanh(), nn.Linear(16, 3)),
           nn.CrossEntropyLoss(reduction="sum"), x, y)
    x = torch.rand(200, 1, generator=g) * 6 - 3
    y = torch.sin(x) + 0.1 * torch.randn(200, 1, generator=g)
    yield ("ReLU MLP, MSE", lambda: nn.Sequential(nn.Linear(1, 24), nn.ReLU(), nn.Linear(24, 24),
                                                  nn.ReLU(), nn.Linear(24, 1)),
           nn.MSELoss(reduction="sum"), x, y)
    x = torch.randn(250, 6, generator=g)
    y = (x.sum(1, keepdim=True) > 0).float()
    yield ("GELU MLP, BCE", lambda: nn.Sequential(nn.Linear(6, 20), nn.GELU(), nn.Linear(20, 1)),
           nn.BCEWithLogitsLoss(reduction="sum"), x, y)
    x = torch.randn(150, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (150,), generator=g)
    yield ("CNN, CE (mean)", lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
                                                   nn.Linear(144, 4)),
           nn.CrossEntropyLoss(reduction="mean"), x, y)
    x = torch.randn(300, 5, generator=g)
    y = torch.poisson(torch.exp(0.5 * x[:, :1]), generator=g)
    yield ("tanh MLP, Poisson", lambda: nn.Sequential(nn.Linear(5, 16), nn.Tanh(),
                                                      nn.Linear(16, 1)),
           nn.PoissonNLLLoss(log_input=True, reduction="sum"), x, y)


class Attention(torch.nn.Module):
    """Token embedding, one head of self-attention, mean over the sequence, a linear head."""

    def __init__(self, vocabulary=10, width=8, classes=3):
        super().__init__()
        nn = torch.nn
        self.embed = nn.Embedding(vocabulary, width)
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.head = nn.Linear(width, classes)

    def forward(self, tokens):
        h = self.embed(tokens)
        scores = self.q(h) @ self.k(h).transpose(-1, -2) / math.sqrt(h.shape[-1])
        return self.head((torch.softmax(scores, -1) @ self.v(h)).mean(-2))


class TanhRNN(torch.nn.Module):
    """h_t = tanh(W [x_t; h_{t-1}] + b) over the sequence, a linear read-out of the last h."""

    def __init__(self, inputs=3, width=8):
        super().__init__()
        self.width = width
        self.cell, self.out = torch.nn.Linear(inputs + width, width), torch.nn.Linear(width, 1)

    def forward(self, x):  # (batch, time, inputs)
        h = x.new_zeros(x.shape[0], self.width)
        for t in range(x.shape[1]):
            h = torch.tanh(self.cell(torch.cat([x[:, t], h], 1)))
        return self.out(h)


def unseen_family_networks():
    """(name, network maker, loss, x, y) of the five --unseen-families networks."""
    g = torch.Generator().manual_seed(11)
    nn = torch.nn
    x = torch.randn(240, 8, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + 2 * (x[:, 3] > 0.5).long()
    yield ("LayerNorm SiLU MLP, CE", lambda: nn.Sequential(
        nn.Linear(8, 20), nn.LayerNorm(20), nn.SiLU(), nn.Linear(20, 20), nn.LayerNorm(20),
        nn.SiLU(), nn.Linear(20, 4)), nn.CrossEntropyLoss(reduction="sum"), x, y)
    t = torch.randint(0, 10, (200, 6), generator=g)
    y = ((t == 0).sum(1) > (t == 1).sum(1)).long() + (t[:, 0] > 5).long()
    yield ("attention, CE", Attention, nn.CrossEntropyLoss(reduction="sum"), t, y)
    x = torch.randn(160, 5, 3, generator=g)
    yield ("tanh RNN, MSE", TanhRNN, nn.MSELoss(reduction="sum"), x,
           0.3 * x.sum((1, 2)).unsqueeze(1))
    x = torch.randn(150, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long() + (x[:, 0, 4:].mean((1, 2)) > 0).long()
    yield ("BatchNorm CNN (eval), CE", lambda: nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(54, 3)), nn.CrossEntropyLoss(reduction="sum"), x, y)
    x = torch.rand(220, 2, generator=g) * 4 - 2
    y = torch.stack([torch.sin(x[:, 0]), x[:, 0] * x[:, 1], torch.cos(x[:, 1])], 1)
    yield ("deep ReLU MLP, Huber", lambda: nn.Sequential(
        nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 3)), nn.SmoothL1Loss(reduction="sum"), x, y)


FAMILIES = {"seen": (family_networks, 0, 10), "unseen": (unseen_family_networks, 100, 20)}


def family_closures(kind, dtype, which="seen"):
    """Each --families (or --unseen-families) network trained to its MAP (300 Adam steps,
    weight decay 1e-3; in eval mode), as a ggn_vp or ef_vp closure; the same weights on every
    call."""
    networks, first_seed, _ = FAMILIES[which]
    for seed, (_name, make, loss, x, y) in enumerate(networks()):
        torch.manual_seed(first_seed + seed)
        net = make()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            (loss(net(x), y) + 1e-3 * sum(p.square().sum() for p in net.parameters())).backward()
            opt.step()
        net.eval()
        y = y.to(dtype) if y.is_floating_point() else y
        x = x.to(dtype) if x.is_floating_point() else x  # token ids stay integers
        build = fl.ggn_vp if kind == "GGN" else fl.ef_vp
        yield seed, build(net.to(dtype), loss, (x, y))


def rows_for(kind, shift, dtype, families=None, tols=TOLS):
    """(the rule's rows, the derived bound's rows); families: "seen" or "unseen" for the
    --families or --unseen-families networks, with shift a multiple of ||A||."""
    rule, bound = [], []
    made = family_closures(kind, dtype, families) if families else closures(kind, dtype)
    z_seed = FAMILIES[families][2] if families else 10
    for seed, h in made:
        n = h.num_params
        A = h(torch.eye(n, dtype=dtype)).double()
        A = (A + A.T) / 2
        prior = shift * float(torch.linalg.eigvalsh(A)[-1]) if families else shift
        z = torch.randn(4, n, generator=torch.Generator().manual_seed(seed + z_seed)).to(dtype)
        ref = dense_funm(A + prior * torch.eye(n, dtype=torch.float64), z, DENSE_FNS["inv_sqrt"])

        def error(x):
            return (x.double() - ref).norm(dim=1) / ref.norm(dim=1)
        m = min(n, 400) if families else n
        if families:  # one basis: the same iterates as the fixed-m runs below
            curve = error_curve(A.to(dtype), z, "inv_sqrt", m, shift=prior, ref=ref)[0]
        else:
            curve = torch.stack([error(fl.inv_sqrt_apply(A.to(dtype), z, j, shift=prior,
                                                         check=False))
                                 for j in range(1, n + 1)], 1)
        for tol in tols:
            for out, op in ((rule, lambda V, h=h: h(V)), (bound, h)):
                x, info = fl.inv_sqrt_apply(op, z, m, tol=tol, shift=prior, return_info=True)
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
    p.add_argument("--families", action="store_true",
                   help="five networks of other kinds, priors relative to ||A|| (module doc)")
    p.add_argument("--unseen-families", action="store_true",
                   help="five more, chosen after the stop was (module doc)")
    p.add_argument("--loose", action="store_true", help="tolerances 0.3, 0.2, 0.1, 0.05")
    args = p.parse_args()
    dtype = torch.float64 if args.float64 else torch.float32
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # columns at float32's floor: unconverged
    families = "unseen" if args.unseen_families else "seen" if args.families else None
    tols = TOLS + [1e-6, 1e-9] if families == "unseen" and args.float64 else TOLS
    tols = [0.3, 0.2, 0.1, 0.05] if args.loose else tols
    nets = "5 networks" if families else "4 MLPs"
    print(f"torch threads: {torch.get_num_threads()}; {str(dtype)[6:]} closures, {nets} x 4 z "
          "columns; "
          f"tols {', '.join(f'{t:.0e}' for t in tols)}")
    head = "stops  >tol max e/tol  late mean s/o  max s/o"
    print(f"{'closure + prior':24s} {'stop on':14s} {head}")
    totals = {"the rule": [], "derived bound": []}
    for kind in ("GGN", "EF"):
        for shift in (1e-5, 1e-3, 0.1) if families else (1e-2, 0.1, 1.0):
            rule, bound = rows_for(kind, shift, dtype, families, tols)
            label = f"{kind} + {shift:g}" + (" ||A||" if families else "")
            for name, rows in (("the rule", rule), ("derived bound", bound)):
                totals[name] += rows
                print(f"{label:24s} {name:14s} {summary(rows)}")
    for name, rows in totals.items():
        print(f"{'all':24s} {name:14s} {summary(rows)}")
    print("late: stop > ceil(1.05 oracle); e/tol: actual error / tol; s/o: stop / oracle")


if __name__ == "__main__":
    main()
