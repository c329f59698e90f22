"""What every curvature product shares: the chosen parameters, flattened; the model as a
function of them; the data batches on the parameters' device; the closure's casting."""

import warnings

import torch
from torch.func import functional_call

from .data import data_sweep, loss_reduction, move_batch, summed_loss


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


class Problem:
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
