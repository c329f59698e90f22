"""Laplace / asymptotic-MLE posteriors N(theta_hat, A^{-1}), sampled by Lanczos.

A = curvature of the total loss (fastlanczos.curvature.data's convention) + prior precision.
A sample is theta_hat + A^{-1/2} z with z ~ N(0, I); only products with A are ever made.
"""

import copy

import torch

from ..curvature import (
    ef_diagonal,
    ef_vp,
    flattener,
    ggn_vp,
    hessian_vp,
    hutchinson_diagonal,
    select_parameters,
)
from ..curvature.data import data_sweep, loss_reduction, move_batch, summed_loss
from ..curvature.ggn import CACHE_BUDGET, convex_in_outputs
from ..krylov.nystrom import NystromSketch
from ..precondition import choose_preconditioner
from . import marglik
from .data_parallel import data_parallel_of, is_empty, unwrap, zero_product
from .predictive import check_choices, predict
from .sampling import gaussian_sample, with_prior

CLASSIFICATION_LOSSES = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss, torch.nn.BCEWithLogitsLoss)
REGRESSION_LOSSES = (torch.nn.MSELoss, torch.nn.GaussianNLLLoss, torch.nn.L1Loss,
                     torch.nn.SmoothL1Loss, torch.nn.HuberLoss)


def check_prior(prior_precision, n, like):
    """A scalar float or a (n,) tensor on the parameters' device/dtype; >= 0 and finite."""
    p = torch.as_tensor(prior_precision, dtype=like.dtype, device=like.device)
    if p.dim() not in (0, 1) or (p.dim() == 1 and p.shape[0] != n):
        raise ValueError(f"prior_precision must be a scalar or have shape ({n},), got "
                         f"{tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError("prior_precision must be finite and >= 0")
    return p


def infer_likelihood(loss_fn, likelihood):
    if likelihood is not None:
        if likelihood not in ("classification", "regression"):
            raise ValueError("likelihood must be 'classification' or 'regression', got "
                             f"{likelihood!r}")
        return likelihood
    if isinstance(loss_fn, CLASSIFICATION_LOSSES):
        return "classification"
    if isinstance(loss_fn, REGRESSION_LOSSES):
        return "regression"
    raise ValueError("cannot tell the likelihood from loss_fn: pass likelihood='classification' "
                     "or 'regression'")


class LaplacePosterior:
    """N(theta_hat, A^{-1}) with A = curvature of the total loss + prior_precision * I.

    model: trained, in eval mode; its current (chosen) parameters are theta_hat.
    loss_fn, data, params, reduction, batch_size: as for fastlanczos.curvature's builders.
    curvature: "ggn" (default; PSD), "hessian" (exact, may be indefinite), "ef".
    prior_precision: >= 0, scalar or shape (n,); 0 is the MLE asymptotics, which needs a
    positive definite curvature. cache: keep the GGN's per-example Jacobians between products
    (memory N * C * n elements), "auto" when they fit in cache_budget elements.
    data_parallel: False (default); True (the world) or a torch.distributed process group:
    data is this rank's shard (uneven or empty shards are fine), and the curvature, its
    diagonal and the log-likelihood sum over the ranks; samples are the same on every rank
    (z drawn on the group's first rank and broadcast; see laplace/data_parallel.py). Every
    rank must then make the same calls. A DistributedDataParallel model is used through
    its .module.
    """

    def __init__(self, model, loss_fn, data, curvature="ggn", prior_precision=1.0, *,
                 params=None, likelihood=None, reduction=None, batch_size=None,
                 hessian_mode="fwd-rev", cache="auto", cache_budget=CACHE_BUDGET,
                 data_parallel=False):
        if curvature not in ("ggn", "hessian", "ef"):
            raise ValueError(f"curvature must be 'ggn', 'hessian' or 'ef', got {curvature!r}")
        model = unwrap(model)
        self._dp = data_parallel_of(data_parallel)
        empty = self._dp is not None and is_empty(data)
        self.model, self.curvature = model, curvature
        # PSD by construction, decided the same on every rank (an empty one's product is 0):
        # the empirical Fisher always, the GGN where the loss is convex in the outputs
        self._psd = curvature == "ef" or (curvature == "ggn" and convex_in_outputs(loss_fn))
        self.names, theta = select_parameters(model, params)
        self.theta_hat = torch.cat([theta[k].flatten() for k in self.names]).clone()
        self.n = self.theta_hat.numel()
        self._to_vec, self._to_dict = flattener(self.names, theta)
        self.likelihood = infer_likelihood(loss_fn, likelihood)
        self._sigmoid = isinstance(loss_fn, torch.nn.BCEWithLogitsLoss)
        self.prior_precision = check_prior(prior_precision, self.n, self.theta_hat)
        self._prior_floor = float(self.prior_precision.min())
        if not empty:
            _check_first_batch(model, loss_fn, data, reduction, batch_size, self.theta_hat)
        common = dict(params=self.names, reduction=reduction, batch_size=batch_size)
        # the Hessian's diagonal is Hutchinson's through the (summed) product, on every rank
        self._diag = lambda: hutchinson_diagonal(
            self.curvature_vp, self.n, dtype=self.theta_hat.dtype,
            device=self.theta_hat.device, generator=self._shared_generator()).clamp_min(0)
        if empty:  # this rank's share of every sum is zero
            self.curvature_vp = zero_product
            if curvature != "hessian":
                self._diag = lambda: torch.zeros_like(self.theta_hat)
        elif curvature == "ggn":
            self.curvature_vp = ggn_vp(model, loss_fn, data, cache=cache,
                                       cache_budget=cache_budget, **common)
            self._diag = self.curvature_vp.diagonal  # shares the cached Jacobians
        elif curvature == "hessian":
            self.curvature_vp = hessian_vp(model, loss_fn, data, mode=hessian_mode, **common)
        elif curvature == "ef":
            self.curvature_vp = ef_vp(model, loss_fn, data, **common)
            self._diag = lambda: ef_diagonal(model, loss_fn, data, **common)
        if self._dp is not None:
            self.curvature_vp = self._dp.product(self.curvature_vp)
            if curvature != "hessian":
                self._diag = self._dp.summed(self._diag)
        self.precision_vp = with_prior(self.curvature_vp, self.prior_precision)
        self._curvature_diagonal = []  # computed once, shared by with_prior_precision copies
        self._sketches = {}  # Nystrom sketches and choices made from them, shared the same way
        self.last_info = None
        # for the marginal likelihood (marglik.py): the loss at theta_hat and the probe runs on
        # the curvature, computed once and shared by with_prior_precision copies
        self._loss_args = (loss_fn, data, reduction, batch_size)
        self._marglik_cache = {}
        self.optimize_info = None

    def with_prior_precision(self, prior_precision):
        """The same posterior with another prior precision, sharing the curvature (and its
        cached Jacobians and diagonal): cheap for choosing the prior on a grid."""
        other = copy.copy(self)
        other.prior_precision = check_prior(prior_precision, self.n, self.theta_hat)
        other._prior_floor = float(other.prior_precision.min())
        other.precision_vp = with_prior(self.curvature_vp, other.prior_precision)
        return other

    def diagonal(self):
        """diag(A) (exact for ggn and ef, Hutchinson clamped at 0 for the Hessian), the
        curvature's part computed once; floored at eps * max so D^{-1/2} stays finite."""
        if not self._curvature_diagonal:
            self._curvature_diagonal.append(self._diag())
        d = self._curvature_diagonal[0] + self.prior_precision
        return d.clamp_min(d.max() * torch.finfo(d.dtype).eps)

    def _shared_generator(self):
        """None, or under data_parallel a generator seeded alike on every rank."""
        return None if self._dp is None else self._dp.generator(self.theta_hat.device)

    def sample(self, num_samples, m=None, tol=1e-3, precondition="auto", generator=None,
               return_info=False, progress=False, memory_budget=None):
        """(num_samples, n) draws theta_hat + R z, R R^T = A^{-1}, z ~ N(0, I).

        m: the most Lanczos steps (default min(n, 200)); tol: relative error tolerance per
        sample (None: run m steps). precondition (the distribution is the same for all):
        "auto" (default): a Nystrom sketch of the curvature, grown while its model of the
        spectrum predicts a saving (fastlanczos.nystrom_preconditioner) and dropped where it
        predicts none; the sketch is kept and shared by with_prior_precision copies, so
        later calls spend no products on it. "nystrom": that sketch, always used. "diag":
        D = diag(A) (exact for ggn/ef); measured on the digits CNN it never needed fewer
        steps than none and up to 2.5x more at small prior precision, because A = GGN +
        prior I has a large cluster at the prior that D spreads. None; a positive (n,)
        tensor D; or a preconditioner object. See benchmarks/bench_precondition.py for the
        measurement behind the default. progress=True: a tqdm bar over the steps.
        memory_budget: bytes for the sampler's own allocations (basis, work vectors, the
        preconditioner's U; the model and cached Jacobians are outside it): chunks of
        samples, or the two-pass mode, as info.memory_plan says (fastlanczos.inv_root_apply).
        With tol, a PSD curvature (ef; ggn of a convex loss) and a positive prior,
        A >= min(prior) I: that bound makes the stop the Gauss-Radau one
        (fastlanczos.funm_apply's eig_lower_bound; README, "Stopping at a tolerance");
        the Hessian has none.
        """
        z = torch.randn(num_samples, self.n, generator=generator, dtype=self.theta_hat.dtype,
                        device=self.theta_hat.device)
        if self._dp is not None:
            z = self._dp.same_z(z)  # the first rank's draw (its generator) on every rank
        m = min(self.n, 200) if m is None else m  # m=0 is an error, not the default
        pre = self._preconditioner(precondition, z, tol, memory_budget)
        x, info = gaussian_sample(self.precision_vp, z, m, tol=tol, precondition=pre,
                                  progress=progress, memory_budget=memory_budget,
                                  eig_lower_bound=self.spectrum_floor())
        self.last_info = info
        samples = self.theta_hat + x
        return (samples, info) if return_info else samples

    def spectrum_floor(self):
        """A lower bound of A's eigenvalues, or None: min(prior) where the curvature is PSD
        (the empirical Fisher, and the GGN of a loss convex in the outputs, as ggn_vp marks
        it; the Hessian need not be, nor the GGN of another loss)."""
        if not self._psd or not self._prior_floor > 0:
            return None
        return self._prior_floor

    def _preconditioner(self, precondition, z, tol, memory_budget=None):
        """A preconditioner object (or None) for precondition=, see sample()."""
        if isinstance(precondition, str) and precondition == "diag":
            precondition = self.diagonal()
        if not (isinstance(precondition, str) and precondition in ("auto", "nystrom")):
            return choose_preconditioner(precondition, None, z, 0.0, tol)
        p, low = self.prior_precision, self._prior_floor  # floats read once, at construction
        if p.dim() == 0:  # the curvature's sketch serves every scalar prior: P for C + p I
            key, sketched, shift, floor = "curvature", self.curvature_vp, low, None
        else:  # a per-parameter prior is no shift: sketch A itself, floored at min(prior)
            # keyed by the tensor's id: a reused id could only pick a less suited P, and any
            # SPD P gives exact samples
            key, sketched, shift = ("precision", id(p)), self.precision_vp, 0.0
            floor = low if low > 0 else None
        # the choice too is kept: a repeated sample() call repeats no setup (and no host sync)
        cap = None if memory_budget is None else int(memory_budget // (4 * z[0].nbytes))
        choice = (precondition, key, shift, floor, z.shape[0], tol, z.dtype, cap)
        if choice not in self._sketches:
            sketch = self._sketches.get(key)
            if sketch is None:
                sketch = self._sketches.setdefault(key, NystromSketch(
                    sketched, self.n, z.dtype, z.device, self._shared_generator()))
            self._sketches[choice] = choose_preconditioner(
                precondition, sketched, z, shift, tol, floor=floor, sketch=sketch, max_rank=cap)
            return self._sketches[choice]
        pre = self._sketches[choice]
        if pre is not None:
            pre.products = 0  # built by an earlier call
        return pre

    def predictive(self, x, num_samples=32, pred_type="glm", link_approx=None, samples=None,
                   chunk=16, **sample_kwargs):
        """The posterior predictive at inputs x from parameter samples (drawn here with
        sample(num_samples, **sample_kwargs), or given as (S, n)), vmapped in chunks.

        pred_type: "glm" (default; the linearized network f(x, theta_hat) + J(x) (theta_s -
        theta_hat), one jvp per sample) or "nn" (the sampled networks themselves).
        link_approx (classification): "probit" (the default for glm) or "mc" (average of
        softmaxes, sigmoid for BCEWithLogitsLoss; the only choice for nn).
        Returns class probabilities (B, C), or for regression RegressionPredictive(mean,
        variance). See fastlanczos.laplace.predictive."""
        if samples is None:
            check_choices(pred_type, link_approx)  # fail before spending the sampling run
            samples = self.sample(num_samples, **sample_kwargs)
        return predict(self, x, samples, pred_type, link_approx, chunk)

    def log_marginal_likelihood(self, prior_precision=None, **quadrature):
        """Marglik(value, stderr): the Laplace log marginal likelihood at prior_precision
        (default: this posterior's), log p(D | theta_hat) - (1/2) [sum_i p_i theta_hat_i^2 -
        sum_i log p_i + log det A] up to a constant, laplace-torch's convention (see
        fastlanczos.laplace.marglik). log det A by stochastic Lanczos quadrature; stderr is
        its standard error over the probes. A scalar prior reuses one cached probe run on the
        curvature for every value. quadrature: probes=32, sketch=32, steps=80, seed=0."""
        return marglik.log_marginal_likelihood(self, prior_precision, **quadrature)

    def optimize_prior_precision(self, method="marglik", **kwargs):
        """This posterior with its prior precision chosen (a with_prior_precision copy); the
        copy's .optimize_info is a PriorInfo (method, prior, objective, stderr, seconds,
        products, grid).

        method="marglik": the scalar delta maximizing log_marginal_likelihood, from the cached
        probe run (no products after it), within bounds=(1e-6, 1e8); per_layer=True then
        refines one delta per parameter tensor by MacKay's fixed point of the gradient
        (iterations=3 fresh probe runs, since a per-layer prior is no scalar shift).
        method="gridsearch": the scalar delta in grid (default logspace(-2, 4, 25)) with the
        least NLL on val=(x_val, y_val) of the predictive (pred_type, link_approx,
        num_samples=32); all grid points' samples come from one Lanczos run.
        Also: probes, sketch, steps, seed (the quadrature), chunk (the predictive)."""
        return marglik.optimize_prior_precision(self, method, **kwargs)


def _check_first_batch(model, loss_fn, data, reduction, batch_size, like):
    """Run the model and loss on the first batch, so shape errors surface here as a
    ValueError."""
    x, y = next(data_sweep(data, batch_size)())
    x, y = move_batch(x, y, like)
    try:
        with torch.no_grad():
            out = model(x)
            summed_loss(loss_fn, loss_reduction(loss_fn, reduction))(out, y)
    except (RuntimeError, IndexError, TypeError) as err:
        raise ValueError(f"the model or loss_fn failed on the first data batch (inputs "
                         f"{tuple(x.shape)}, targets {tuple(y.shape)}): {err}") from err
