"""Curvature-vector products of a model's total loss, as batched closures hvp(V).

Each builder returns hvp(V) for V of shape (n,) or (k, n), laid out as
torch.nn.utils.parameters_to_vector over the chosen parameters (all trainable ones by default,
or `params=`: names or tensors, in the order given). The output has V's shape, dtype and
device, so hvp plugs into inv_sqrt_apply as is. The data are swept once per call, whatever k.

The matrix is the curvature of the SUM of per-example losses over the whole data set
(see data.py: a "mean" loss is multiplied by its batch size):
  ggn_vp      sum_i J_i^T H_i J_i, J_i the Jacobian of example i's outputs, H_i the Hessian of
              its loss in the outputs (PSD for convex losses; the Fisher for cross-entropy and
              squared error);
  hessian_vp  the exact Hessian (may be indefinite);
  ef_vp       the empirical Fisher sum_i g_i g_i^T of per-example gradients.
The model is evaluated as it is: put it in eval mode (BatchNorm, dropout) first.

One module per product: ggn.py, hessian.py, empirical_fisher.py; problem.py holds what they
share (parameter selection and flattening, the model as a function, the data); data.py the
sweep and the summed-loss convention; hutchinson.py the stochastic diagonal.
"""

from .empirical_fisher import ef_diagonal, ef_vp
from .ggn import ggn_diagonal, ggn_vp
from .hessian import hessian_vp
from .hutchinson import hutchinson_diagonal
from .problem import flattener, select_parameters

__all__ = ["ef_diagonal", "ef_vp", "flattener", "ggn_diagonal", "ggn_vp", "hessian_vp",
           "hutchinson_diagonal", "select_parameters"]
