"""Curvature-vector products of a model's total loss, as batched closures hvp(V).

Each builder returns hvp(V) for V of shape (n,) or (k, n), laid out as
torch.nn.utils.parameters_to_vector over the chosen parameters (all trainable ones by default,
or `params=`: names or tensors, in the order given). The output has V's shape, dtype and
device, so hvp plugs into inv_sqrt_apply as is. The data are swept once per call, whatever k.

The matrix is the curvature of the SUM of per-example losses over the whole data set
(see fastlanczos.data: a "mean" loss is multiplied by its batch size):
  ggn_vp      sum_i J_i^T H_i J_i, J_i the Jacobian of example i's outputs, H_i the Hessian of
              its loss in the outputs (PSD for convex losses; the Fisher for cross-entropy and
              squared error);
  hessian_vp  the exact Hessian (may be indefinite);
  ef_vp       the empirical Fisher sum_i g_i g_i^T of per-example gradients.
The model is evaluated as it is: put it in eval mode (BatchNorm, dropout) first.

Why a block is cheap: for k vectors the GGN product does not loop over k. Per data chunk it
forms the per-example output Jacobian J (B, C, n) once (C reverse passes, batched by vmap),
then J^T H J V^T is two matmuls for all k vectors. That beats k jvp+vjp pairs once k is
about C (measured for the digits CNN: crossover near k = 10 with C = 10; at k = 32 the block
is 2-2.7x faster than 32 single products, see benchmarks/bench_curvature.py), so smaller
blocks take the jvp+vjp route. With cache=True the Jacobians are kept and every later
product is two matmuls (10-13x). The empirical Fisher forms per-example gradients G (B, n)
once per chunk, whatever k. The Hessian has no such structure: its block is vmapped.
"""

import warnings

import torch
from torch.func import functional_call, grad, jacrev, jvp, vjp, vmap

from .data import data_sweep, loss_reduction, move_batch, summed_loss

JACOBIAN_BUDGET = 2**24  # elements of one chunk's J (128 MiB in float64): bounds memory


def select_parameters(model, params=None):
    """(names, {name: detached tensor}) of the chosen parameters, in the order given."""
    named = dict(model.named_parameters())
    if params is None:
        names = [k for k, p in named.items() if p.requires_grad]
    else:
        by_id = {id(p): k for k, p in named.items()}
        names = []
        for p in params:
            name = p if isinstance(p, str) else by_id.get(id(p))
            if name not in named:
                raise ValueError(f"params: {p if isinstance(p, str) else 'a tensor'} is not a "
                                 "parameter of the model")
            names.append(name)
        if len(set(names)) != len(names):
            raise ValueError("params lists a parameter twice")
    if not names:
        raise ValueError("the model has no trainable parameters to take the curvature of")
    return names, {k: named[k].detach() for k in names}


def flattener(names, theta):
    """(to_vec, to_dict) between {name: tensor (*lead, *shape)} and tensors (*lead, n)."""
    shapes = [theta[k].shape for k in names]
    sizes = [s.numel() for s in shapes]

    def to_vec(d, lead=0):
        return torch.cat([d[k].reshape(*d[k].shape[:lead], -1) for k in names], dim=-1)

    def to_dict(v):
        parts = torch.split(v, sizes, dim=-1)
        return {k: t.reshape(*v.shape[:-1], *s) for k, t, s in zip(names, parts, shapes)}

    return to_vec, to_dict


class _Problem:
    """The pieces every product needs: parameters, the model as a function, the data."""

    def __init__(self, model, loss_fn, data, params, reduction, batch_size):
        self.names, self.theta = select_parameters(model, params)
        self.ref = self.theta[self.names[0]]
        self.n = sum(t.numel() for t in self.theta.values())
        self.to_vec, self.to_dict = flattener(self.names, self.theta)
        self.total = summed_loss(loss_fn, loss_reduction(loss_fn, reduction))
        self.sweep = data_sweep(data, batch_size)
        self.model = model
        if model.training and any(isinstance(m, (torch.nn.modules.batchnorm._BatchNorm,
                                                 torch.nn.Dropout)) for m in model.modules()):
            warnings.warn("the model is in training mode and has BatchNorm/Dropout layers: "
                          "call model.eval() so the curvature is that of a fixed function",
                          stacklevel=3)

    def forward(self, theta, x):
        return functional_call(self.model, theta, (x,))

    def batches(self):
        for x, y in self.sweep():
            yield move_batch(x, y, self.ref)

    def wrap(self, block_product):
        """hvp(V): casts V to the parameters' dtype/device and back, accepts (n,) or (k, n)."""
        def hvp(V):
            if V.shape[-1] != self.n or V.dim() not in (1, 2):
                raise ValueError(f"hvp expects shape (n,) or (k, n) with n = {self.n}, got "
                                 f"{tuple(V.shape)}")
            W = V.reshape(-1, self.n).to(self.ref.device, self.ref.dtype)
            with torch.no_grad():
                out = block_product(W)
            return out.reshape(V.shape).to(V.device, V.dtype)
        hvp.num_params = self.n
        return hvp


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
           method="auto", cache=False, jacobian_budget=JACOBIAN_BUDGET):
    """Generalized Gauss-Newton products sum_i J_i^T H_i J_i V (see the module docstring).

    method: "jacobian" (materialize per-example Jacobians per chunk; cost independent of k),
    "jvp" (one jvp + vjp per vector), or "auto" (jacobian when k >= C, C the number of
    outputs per example; the crossover measured on CPU for the digits CNN). cache=True keeps
    every chunk's (J, H) after the first sweep, so later products are matmuls only; memory
    N * C * (n + C) elements for N examples. The closure's .diagonal() is the GGN's exact
    diagonal from the same (cached) Jacobians. Products are computed in the parameters' dtype.
    """
    if method not in ("auto", "jacobian", "jvp"):
        raise ValueError(f"method must be 'auto', 'jacobian' or 'jvp', got {method!r}")
    prob = _Problem(model, loss_fn, data, params, reduction, batch_size)
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
        if cache and stored:
            return False  # the Jacobians are already paid for
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
    return hvp


def ggn_diagonal(model, loss_fn, data, *, params=None, reduction=None, batch_size=None,
                 jacobian_budget=JACOBIAN_BUDGET):
    """The exact diagonal of the GGN, sum_i diag(J_i^T H_i J_i), from per-example Jacobians
    (one sweep, the cost of one block product)."""
    return ggn_vp(model, loss_fn, data, params=params, reduction=reduction,
                  batch_size=batch_size, jacobian_budget=jacobian_budget).diagonal()


def hessian_vp(model, loss_fn, data, *, params=None, reduction=None, batch_size=None,
               mode="fwd-rev"):
    """Exact Hessian products of the total loss, the block vmapped per data batch.

    mode "fwd-rev": jvp of the gradient (forward-over-reverse). mode "rev-rev": vjp of the
    gradient (double backward, as in the paper); the gradient's graph is built once per batch
    and pulled back for every vector of the block. torch cannot take forward-over-reverse of
    some losses (mse_loss with reduction="mean" in torch 2.x raises about immutable
    ZeroTensors); fwd-rev then falls back to rev-rev with a warning.
    """
    if mode not in ("fwd-rev", "rev-rev"):
        raise ValueError(f"mode must be 'fwd-rev' or 'rev-rev', got {mode!r}")
    prob = _Problem(model, loss_fn, data, params, reduction, batch_size)
    modes = [mode]

    def batch_product(g, tangents):
        if modes[0] == "fwd-rev":
            try:
                return vmap(lambda t: jvp(g, (prob.theta,), (t,))[1])(tangents)
            except RuntimeError as err:
                if "ZeroTensor" not in str(err):
                    raise
                warnings.warn("forward-over-reverse failed for this loss; using rev-rev",
                              stacklevel=4)
                modes[0] = "rev-rev"
        _, pull = vjp(g, prob.theta)
        return vmap(lambda t: pull(t)[0])(tangents)

    def block(V):
        out = torch.zeros_like(V)
        tangents = prob.to_dict(V)
        for x, y in prob.batches():
            g = grad(lambda th: prob.total(prob.forward(th, x), y))
            out += prob.to_vec(batch_product(g, tangents), lead=1)
        return out

    return prob.wrap(block)


def per_example_gradients(prob, x, y):
    """G (B, n): gradient of each example's share of the summed loss, J_i^T dL/dF_i, by one
    vmapped reverse pass with the loss gradient in the outputs as cotangent."""
    F = prob.forward(prob.theta, x)
    r = grad(lambda G: prob.total(G, y))(F)

    def single(theta, xi, ri):
        return (prob.forward(theta, xi.unsqueeze(0))[0] * ri).sum()

    g = vmap(grad(single), in_dims=(None, 0, 0))(prob.theta, x, r)
    return prob.to_vec(g, lead=1)


def ef_vp(model, loss_fn, data, *, params=None, reduction=None, batch_size=None):
    """Empirical Fisher products sum_i g_i g_i^T V: per-example gradients G once per batch,
    then (V G^T) G for the whole block."""
    prob = _Problem(model, loss_fn, data, params, reduction, batch_size)

    def block(V):
        out = torch.zeros_like(V)
        for x, y in prob.batches():
            G = per_example_gradients(prob, x, y)
            out.addmm_(V @ G.T, G)
        return out

    return prob.wrap(block)


def ef_diagonal(model, loss_fn, data, *, params=None, reduction=None, batch_size=None):
    """The exact diagonal of the empirical Fisher, sum_i g_i**2."""
    prob = _Problem(model, loss_fn, data, params, reduction, batch_size)
    with torch.no_grad():
        d = torch.zeros(prob.n, dtype=prob.ref.dtype, device=prob.ref.device)
        for x, y in prob.batches():
            d += per_example_gradients(prob, x, y).square().sum(0)
    return d


def hutchinson_diagonal(hvp, n, *, num_probes=32, generator=None, dtype=torch.float32,
                        device="cpu"):
    """Unbiased estimate E[z * A z] of diag(A) with Rademacher probes, one block product."""
    z = torch.randint(0, 2, (num_probes, n), generator=generator, device=device).to(dtype)
    z = 2 * z - 1
    return (z * hvp(z)).mean(0)
