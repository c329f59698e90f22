"""The Laplace log marginal likelihood and the prior precision chosen by it (or on a grid).

    log p(D | delta) ~ log p(D | theta_hat) - (1/2) [delta ||theta_hat||^2 - n log delta
                       + log det(B + delta I)]          (up to a constant in delta)

the convention of laplace-torch (BaseLaplace.log_marginal_likelihood: log likelihood minus
half of the log-det ratio and the scatter, prior mean 0). B is the posterior's curvature of the
SUMMED loss; log p(D | theta_hat) is minus the summed loss (cross-entropy, NLL, BCE are exact
log likelihoods). For MSELoss the sum convention's curvature 2 J^T J is that of a Gaussian
likelihood with variance 1/2 (C / 2 for a "mean" MSELoss over C outputs, which the sum
convention multiplies by the batch size only), so its normalizer (N C / 2) log(2 pi sigma^2)
is added; other regression losses are used as -loss (a constant off, which does not move the
optimum in delta).

log det(B + delta I) comes from stochastic Lanczos quadrature (krylov.quadrature): one probe
run on B, kept on the posterior, gives it for every scalar delta, so choosing delta costs no
further products: the optimum solves n - delta tr (B + delta I)^{-1} = delta ||theta_hat||^2
(MacKay's gamma = delta ||theta||^2), whose left side falls and right side rises in delta:
one root, found by brentq in log delta.
"""

import math
import time
from typing import NamedTuple

import torch

from ..curvature.data import data_sweep, loss_reduction, move_batch, summed_loss
from ..krylov import ShiftedQuadrature, rademacher
from .data_parallel import is_empty as _no_data
from .predictive import predict

PROBES = 32  # Rademacher probes
SKETCH = 32  # Hutch++ deflation columns
STEPS = 80  # Lanczos steps per probe (capped at n)
BOUNDS = (1e-6, 1e8)


class Marglik(NamedTuple):
    """The log marginal likelihood and the standard error of its SLQ part (over probes)."""

    value: float
    stderr: float


class PriorInfo(NamedTuple):
    """What optimize_prior_precision did: the method, the chosen prior (float, or (n,) tensor
    per_layer), its log marginal likelihood (marglik) or validation loss (gridsearch), wall
    seconds and block products with the curvature (including the probe run; 0 if it was
    cached), and for gridsearch the (delta, loss) pairs."""

    method: str
    prior_precision: object
    objective: float
    stderr: float
    seconds: float
    products: int
    grid: list


def log_likelihood(post):
    """log p(D | theta_hat) in the convention above, computed once per curvature."""
    if "loglik" not in post._marglik_cache:
        loss_fn, data, reduction, batch_size = post._loss_args
        total = summed_loss(loss_fn, loss_reduction(loss_fn, reduction))
        params = post._to_dict(post.theta_hat)
        value, count, per_example = 0.0, 0, 1
        dp = post._dp
        with torch.no_grad():
            for x, y in data_sweep(data, batch_size)() if not (dp and _no_data(data)) else ():
                x, y = move_batch(x, y, post.theta_hat)
                out = torch.func.functional_call(post.model, params, (x,))
                value -= float(total(out, y))
                count, per_example = count + out.numel(), out[0].numel()
        if dp is not None:  # sums over the ranks' shards (an empty one has no per_example)
            value, count = dp.sum([value, count], post.theta_hat.device)
            per_example = int(dp.max([per_example], post.theta_hat.device)[0])
        post._marglik_cache["noise"] = noise_variance(post, per_example)
        if isinstance(loss_fn, torch.nn.MSELoss):
            value -= 0.5 * count * math.log(2 * math.pi * post._marglik_cache["noise"])
        post._marglik_cache["loglik"] = value
    return post._marglik_cache["loglik"]


def noise_variance(post, per_example):
    """The Gaussian noise variance that MSELoss stands for in the sum convention: a "mean"
    loss is multiplied by the batch size only, so it is sum (f - y)^2 / C over C outputs per
    example, i.e. (f - y)^2 / (2 sigma^2) with sigma^2 = C / 2; "sum"/"none": sigma^2 = 1/2."""
    loss_fn, _, reduction, _ = post._loss_args
    mean = loss_reduction(loss_fn, reduction) == "mean"
    return per_example / 2.0 if mean else 0.5


def curvature_quadrature(post, probes=PROBES, sketch=SKETCH, steps=STEPS, seed=0):
    """(ShiftedQuadrature of the curvature B, products made now): the probe run, cached on the
    posterior (shared by its with_prior_precision copies, whose curvature is the same)."""
    m = min(post.n, steps)
    sketch = min(sketch, post.n - 1)
    key = ("quadrature", probes, sketch, m, seed)
    if key in post._marglik_cache:
        return post._marglik_cache[key], 0
    g = torch.Generator(device=post.theta_hat.device).manual_seed(seed)
    z = rademacher(probes, post.n, dtype=post.theta_hat.dtype, device=post.theta_hat.device,
                   generator=g)
    q = ShiftedQuadrature(post.curvature_vp, z, m, sketch=sketch, generator=g)
    post._marglik_cache[key] = q
    return q, q.products


def check_positive_prior(prior, n):
    p = torch.as_tensor(prior, dtype=torch.float64)
    if p.dim() not in (0, 1) or (p.dim() == 1 and p.numel() != n):
        raise ValueError(f"prior_precision must be a scalar or have shape ({n},), got "
                         f"{tuple(p.shape)}")
    if not torch.isfinite(p).all() or not (p > 0).all():
        raise ValueError("the marginal likelihood needs a positive, finite prior_precision "
                         "(log det of the prior is -inf at 0)")
    return p


def scalar_marglik(post, q, delta):
    """Marglik at a scalar delta from the probe run q (no products)."""
    est = q.logdet(delta)
    sq = post.theta_hat.double().square().sum().item()
    value = log_likelihood(post) - 0.5 * (delta * sq - post.n * math.log(delta) + est.value)
    return Marglik(value, 0.5 * est.stderr)


def log_marginal_likelihood(post, prior_precision=None, **quadrature):
    """Marglik(value, stderr) at prior_precision (default: the posterior's own). A scalar uses
    the cached probe run on B (no products after the first call); a (n,) prior is no shift of
    B, so it runs fresh probes on B + diag(prior) (steps products)."""
    p = check_positive_prior(post.prior_precision if prior_precision is None
                             else prior_precision, post.n)
    if p.dim() == 0:
        return scalar_marglik(post, curvature_quadrature(post, **quadrature)[0], p.item())
    q, _ = diagonal_prior_quadrature(post, p, **quadrature)
    return vector_marglik(post, q, p)


def diagonal_prior_quadrature(post, prior, probes=PROBES, sketch=SKETCH, steps=STEPS, seed=0,
                              blocks=None):
    """A probe run on A = B + diag(prior) itself (shift 0): (ShiftedQuadrature, products)."""
    m = min(post.n, steps)
    sketch = min(sketch, post.n - 1)
    g = torch.Generator(device=post.theta_hat.device).manual_seed(seed)
    z = rademacher(probes, post.n, dtype=post.theta_hat.dtype, device=post.theta_hat.device,
                   generator=g)
    d = prior.to(post.theta_hat.dtype).to(post.theta_hat.device)
    q = ShiftedQuadrature(lambda V: post.curvature_vp(V) + d * V, z, m, sketch=sketch,
                          generator=g, blocks=blocks)
    return q, q.products


def vector_marglik(post, q, prior):
    est = q.logdet(0.0)
    theta = post.theta_hat.double().cpu()
    prior = prior.double().cpu()
    value = log_likelihood(post) - 0.5 * ((prior * theta.square()).sum().item()
                                          - prior.log().sum().item() + est.value)
    return Marglik(value, 0.5 * est.stderr)


def best_scalar_delta(post, q, bounds=BOUNDS):
    """The root of n - delta tr (B + delta I)^{-1} - delta ||theta_hat||^2 in [lo, hi]."""
    from scipy.optimize import brentq

    lo, hi = bounds
    if not 0 < lo < hi:
        raise ValueError(f"bounds must satisfy 0 < lo < hi, got {bounds}")
    floor = -q.ritz.min().item()
    lo = max(lo, 1e3 * floor) if floor > 0 else lo  # keep B + delta I definite on the probes
    sq = post.theta_hat.double().square().sum().item()

    def h(u):
        delta = math.exp(u)
        return post.n - delta * q.logdet_grad(delta).value - delta * sq

    a, b = math.log(lo), math.log(hi)
    if h(a) <= 0:
        return lo
    if h(b) >= 0:
        return hi
    return math.exp(brentq(h, a, b, xtol=1e-6))


def layer_blocks(post):
    """(start, stop) of each chosen parameter tensor in the flat vector."""
    sizes = [t.numel() for t in post._to_dict(post.theta_hat).values()]
    starts = [0]
    for s in sizes:
        starts.append(starts[-1] + s)
    return list(zip(starts[:-1], starts[1:]))


def per_layer_deltas(post, delta, iterations, bounds, **quadrature):
    """One prior precision per parameter tensor, by MacKay's fixed point of the marglik's
    gradient: delta_l = gamma_l / ||theta_l||^2, gamma_l = n_l - delta_l tr_l(A^{-1}). A
    per-layer prior is no scalar shift of B, so each iteration runs fresh probes on
    A = B + diag(delta) (steps products each); returns (prior (n,), its quadrature, products)."""
    blocks = layer_blocks(post)
    theta = post.theta_hat.double().cpu()
    sq = torch.tensor([theta[a:b].square().sum().item() for a, b in blocks], dtype=torch.float64)
    sizes = torch.tensor([b - a for a, b in blocks], dtype=torch.float64)
    deltas = torch.full((len(blocks),), float(delta), dtype=torch.float64)
    products = 0
    lo, hi = bounds

    def expand(d):
        return torch.cat([d[i].expand(b - a) for i, (a, b) in enumerate(blocks)])

    for _ in range(iterations):
        q, used = diagonal_prior_quadrature(post, expand(deltas), blocks=blocks, **quadrature)
        products += used
        traces = q.block_traces(0.0)[0].cpu()
        gamma = (sizes - deltas * traces).clamp_min(1e-3 * sizes)  # noise can push it below 0
        deltas = (gamma / sq.clamp_min(1e-300)).clamp(lo, hi)
    q, used = diagonal_prior_quadrature(post, expand(deltas), **quadrature)
    return expand(deltas), q, products + used


def gridsearch(post, val, grid, num_samples, pred_type, link_approx, steps, seed, chunk):
    """The scalar delta in grid with the least validation NLL of the predictive. The samples
    for every delta come from ONE Lanczos run on B from Gaussian z, kept with its basis:
    (B + delta I)^{-1/2} z = ||z|| V (T + delta I)^{-1/2} e1 (shift invariance again)."""
    x, y = val
    g = torch.Generator(device=post.theta_hat.device).manual_seed(seed)
    z = torch.randn(num_samples, post.n, generator=g, dtype=post.theta_hat.dtype,
                    device=post.theta_hat.device)
    q = ShiftedQuadrature(post.curvature_vp, z, min(post.n, steps), keep_basis=True)
    scores = []
    for delta in grid:
        try:
            samples = post.theta_hat + q.apply(torch.rsqrt, float(delta))
        except ValueError:  # B + delta I not positive definite (an indefinite Hessian)
            scores.append((float(delta), math.inf))
            continue
        scores.append((float(delta), validation_nll(post, x, y, samples, pred_type,
                                                    link_approx, chunk)))
    return scores, q.products


def validation_nll(post, x, y, samples, pred_type, link_approx, chunk):
    """Mean NLL of y under the predictive: categorical for classification, Gaussian with the
    predictive variance plus the MSELoss convention's noise (noise_variance) for regression."""
    out = predict(post, x, samples, pred_type, link_approx, chunk)
    y = y.to(post.theta_hat.device)
    if post.likelihood == "regression":
        log_likelihood(post)  # sets the noise variance
        var = out.variance + post._marglik_cache["noise"]
        return (0.5 * ((y - out.mean).square() / var + var.log() + math.log(2 * math.pi))
                ).mean().item()
    if post._sigmoid:
        p = torch.where(y > 0.5, out, 1 - out)
        return -p.double().clamp_min(1e-12).log().mean().item()
    picked = out.double().gather(-1, y.long().reshape(-1, 1)).squeeze(-1)
    return -picked.clamp_min(1e-12).log().mean().item()


METHODS = ("marglik", "gridsearch")


def optimize_prior_precision(post, method="marglik", *, per_layer=False, bounds=BOUNDS,
                             iterations=3, val=None, grid=None, num_samples=32,
                             pred_type="glm", link_approx=None, chunk=16, probes=PROBES,
                             sketch=SKETCH, steps=STEPS, seed=0):
    """The posterior with the chosen prior precision (a with_prior_precision copy), its
    .optimize_info a PriorInfo. See LaplacePosterior.optimize_prior_precision."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    start = time.perf_counter()
    quadrature = dict(probes=probes, sketch=sketch, steps=steps, seed=seed)
    if method == "gridsearch":
        if val is None:
            raise ValueError("method='gridsearch' needs validation data val=(x_val, y_val)")
        if per_layer:
            raise ValueError("per_layer=True needs method='marglik'")
        grid = torch.logspace(-2, 4, 25).tolist() if grid is None else list(grid)
        check_positive_prior(torch.tensor(grid, dtype=torch.float64), len(grid))
        scores, products = gridsearch(post, val, grid, num_samples, pred_type, link_approx,
                                      steps, seed, chunk)
        delta, loss = min(scores, key=lambda t: t[1])
        other = post.with_prior_precision(delta)
        other.optimize_info = PriorInfo(method, delta, loss, math.nan,
                                        time.perf_counter() - start, products, scores)
        return other
    q, products = curvature_quadrature(post, **quadrature)
    delta = best_scalar_delta(post, q, bounds)
    if not per_layer:
        est = scalar_marglik(post, q, delta)
        other = post.with_prior_precision(delta)
    else:
        prior, q2, more = per_layer_deltas(post, delta, iterations, bounds, **quadrature)
        products += more
        est = vector_marglik(post, q2, prior)
        other = post.with_prior_precision(prior.to(post.theta_hat.dtype))
        delta = prior
    other.optimize_info = PriorInfo(method, delta, est.value, est.stderr,
                                    time.perf_counter() - start, products, [])
    return other
