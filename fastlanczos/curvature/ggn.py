"""Generalized Gauss-Newton products sum_i J_i^T H_i J_i V of the total loss.

Why a block is cheap: for k vectors the GGN product does not loop over k. Per data chunk it
forms the per-example output Jacobian J (B, C, n) once (C reverse passes, batched by vmap),
then J^T H J V^T is two matmuls for all k vectors. That beats k jvp+vjp pairs once k is
about C (measured for the digits CNN: crossover near k = 10 with C = 10; at k = 32 the block
is 2-2.7x faster than 32 single products, see benchmarks/bench_curvature.py), so smaller
blocks take the jvp+vjp route. With cache=True the Jacobians are kept and every later
product is two matmuls (10-13x); cache="auto" (the default) keeps them when they fit in
CACHE_BUDGET elements, as LaplacePosterior does: the issue that asked for it measured 32
samples of a digits CNN at 17.3 s uncached and 5.2 s cached.
"""

import torch
from torch.func import grad, jacrev, jvp, vjp, vmap

from .problem import Problem

JACOBIAN_BUDGET = 2**24  # elements of one chunk's J (128 MiB in float64): bounds memory
CACHE_BUDGET = 2**26  # elements of all cached Jacobians (512 MiB in float64) for cache="auto"


def output_hessian(total, F, y):
    """H (B, C, C): each example's Hessian of the loss in its C = prod(output shape) outputs.

    The summed loss is separable over examples, so its Hessian in F is block diagonal and C
    Hessian-vector products with one-hot tangents (the same class for every example) read
    out all blocks at once. Works for any loss; no closed form needed."""
    B = F.shape[0]
    Ff = F.reshape(B, -1)
    C = Ff.shape[1]
    tangents = torch.eye(C, dtype=F.dtype, device=F.device).unsqueeze(1).expand(C, B, C)
    cols = vmap(loss_hvp(total, Ff.view_as(F), y))(tangents.reshape(C, *F.shape))
    return cols.reshape(C, B, C).permute(1, 2, 0)  # cols[c, b] = H_b[:, c]


def loss_hvp(total, F, y):
    """t -> (d^2 L / dF^2) t. Reverse-over-reverse: the loss is cheap in F, and torch's
    forward-over-reverse of mse_loss fails inside vmap (immutable ZeroTensor)."""
    _, pull = vjp(grad(lambda G: total(G, y)), F)
    return lambda t: pull(t)[0]


def output_jacobian(prob, x):
    """(J, F): J (B, C, n) the per-example Jacobian of the flattened outputs in the chosen
    parameters, by C reverse passes vmapped over the examples; F (B, C) the outputs."""
    def single(theta, xi):
        out = prob.forward(theta, xi.unsqueeze(0)).reshape(-1)
        return out, out

    jac, F = vmap(jacrev(single, has_aux=True), in_dims=(None, 0))(prob.theta, x)
    return prob.to_vec({k: j.flatten(2) for k, j in jac.items()}, lead=2), F


def jacobian_chunks(prob, budget=JACOBIAN_BUDGET):
    """Yield (J, H) per data chunk, chunks sized so B * C * n <= budget elements."""
    step = None
    for x, y in prob.batches():
        if step is None:  # one example's output shape; C outputs per example
            shape = prob.forward(prob.theta, x[:1]).shape[1:]
            step = max(1, budget // (shape.numel() * prob.n))
        for i in range(0, x.shape[0], step):
            J, F = output_jacobian(prob, x[i:i + step])
            yield J, output_hessian(prob.total, F.view(-1, *shape), y[i:i + step])


def ggn_vp(model, loss_fn, data, *, params=None, reduction=None, batch_size=None,
           method="auto", cache="auto", jacobian_budget=JACOBIAN_BUDGET,
           cache_budget=CACHE_BUDGET):
    """Generalized Gauss-Newton products sum_i J_i^T H_i J_i V (see the module docstring).

    method: "jacobian" (materialize per-example Jacobians per chunk; cost independent of k),
    "jvp" (one jvp + vjp per vector), or "auto" (jacobian when k >= C, C the number of
    outputs per example; the crossover measured on CPU for the digits CNN). cache=True keeps
    every chunk's (J, H) after the first sweep, so later products are matmuls only; memory
    N * C * (n + C) elements for N examples. cache="auto" (default): True when N * C * n <=
    cache_budget elements (N known from a tensor data set or a DataLoader's dataset; unknown
    N: False). With a cache every product, however narrow, goes through the Jacobians (the
    first fills the cache). The closure's .diagonal() is the GGN's exact
    diagonal from the same (cached) Jacobians. Products are computed in the parameters' dtype.
    """
    if method not in ("auto", "jacobian", "jvp"):
        raise ValueError(f"method must be 'auto', 'jacobian' or 'jvp', got {method!r}")
    prob = Problem(model, loss_fn, data, params, reduction, batch_size)
    if cache == "auto":
        cache = fits_in_cache(prob, data, cache_budget)
    elif not isinstance(cache, bool):
        raise ValueError(f"cache must be True, False or 'auto', got {cache!r}")
    stored = []

    def chunks():
        if not cache:
            return jacobian_chunks(prob, jacobian_budget)
        if not stored:
            stored.extend(jacobian_chunks(prob, jacobian_budget))
        return stored

    def by_jacobian(V):
        out = torch.zeros_like(V)
        for J, H in chunks():
            Jf = J.flatten(0, 1)  # (B*C, n)
            HJV = torch.bmm(H, (Jf @ V.T).view(J.shape[0], J.shape[1], -1))
            out.addmm_(HJV.flatten(0, 1).T, Jf)
        return out

    def by_jvp(V):
        out = torch.zeros_like(V)
        vs = [prob.to_dict(v) for v in V]
        for x, y in prob.batches():
            F, pull = vjp(lambda th: prob.forward(th, x), prob.theta)
            hvp_out = loss_hvp(prob.total, F, y)
            for r, v in enumerate(vs):
                JV = jvp(lambda th: prob.forward(th, x), (prob.theta,), (v,))[1]
                HJV = hvp_out(JV)
                out[r] += prob.to_vec(pull(HJV)[0])
        return out

    outputs = []  # C, found on the first call

    def use_jvp(k):
        if method != "auto":
            return method == "jvp"
        if cache:
            return False  # the Jacobians are (or will be, by this call) paid for once
        if not outputs:
            x, _ = next(prob.batches())
            outputs.append(prob.forward(prob.theta, x[:1]).numel())
        return k < outputs[0]

    def block(V):
        return by_jvp(V) if use_jvp(V.shape[0]) else by_jacobian(V)

    def diagonal():
        """The exact diagonal from the same (cached) Jacobians, see ggn_diagonal."""
        with torch.no_grad():
            return sum((torch.bmm(H, J) * J).sum((0, 1)) for J, H in chunks())

    hvp = prob.wrap(block)
    hvp.diagonal = diagonal
    hvp.cached = cache
    # the entry points read .psd: with shift > 0 and no eig_lower_bound, shift bounds the
    # spectrum of GGN + shift I (fastlanczos/api.py derived_bound)
    hvp.psd = convex_in_outputs(loss_fn)
    return hvp


# Losses whose Hessian in the model's outputs is PSD for every target, so J^T H J is too:
# the GGN of any other loss (a callable, GaussianNLLLoss in its variance, negative class
# weights, BCELoss on probabilities with a target outside [0, 1]) may be indefinite, and is
# not marked. The robust regression losses are convex in the outputs (their Hessian is 1 / beta
# or 0: Huber, smooth L1; 0: L1), as are the logistic margins (sigma(x)(1 - sigma(x)) for
# any target: SoftMarginLoss, MultiLabelSoftMarginLoss).
CONVEX_LOSSES = (torch.nn.CrossEntropyLoss, torch.nn.MSELoss, torch.nn.BCEWithLogitsLoss,
                 torch.nn.NLLLoss, torch.nn.PoissonNLLLoss, torch.nn.HuberLoss,
                 torch.nn.SmoothL1Loss, torch.nn.L1Loss, torch.nn.SoftMarginLoss,
                 torch.nn.MultiLabelSoftMarginLoss)


def convex_in_outputs(loss_fn):
    """Whether loss_fn is one of CONVEX_LOSSES with non-negative weights (PoissonNLLLoss with
    log_input=True only: with rates as inputs it is convex only where they are positive)."""
    if not isinstance(loss_fn, CONVEX_LOSSES):
        return False
    if isinstance(loss_fn, torch.nn.PoissonNLLLoss) and not loss_fn.log_input:
        return False
    for name in ("weight", "pos_weight"):
        w = getattr(loss_fn, name, None)
        if w is not None and not bool((w >= 0).all()):
            return False
    return True


def number_of_examples(data):
    """N for a (inputs, targets) tensor pair or a DataLoader over a sized dataset, else None."""
    if isinstance(data, (tuple, list)):
        return data[0].shape[0]
    return len(getattr(data, "dataset", ())) or None


def fits_in_cache(prob, data, budget):
    """Whether N * C * n Jacobian elements fit in budget (C: outputs per example)."""
    examples = number_of_examples(data)
    if examples is None:
        return False
    x, _ = next(prob.batches())
    outputs = prob.forward(prob.theta, x[:1]).numel()
    return examples * outputs * prob.n <= budget


def ggn_diagonal(model, loss_fn, data, *, params=None, reduction=None, batch_size=None,
                 jacobian_budget=JACOBIAN_BUDGET):
    """The exact diagonal of the GGN, sum_i diag(J_i^T H_i J_i), from per-example Jacobians
    (one sweep, the cost of one block product)."""
    return ggn_vp(model, loss_fn, data, params=params, reduction=reduction,
                  batch_size=batch_size, jacobian_budget=jacobian_budget).diagonal()
