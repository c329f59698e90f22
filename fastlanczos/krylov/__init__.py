"""The Krylov engine: tensors and block products only.

Recurrences (lanczos.py), one reorthogonalization step (reorth.py), the tridiagonal solve
(tridiag.py) and the small f(T) e_1 problem (projected.py), the f(A)Z driver (funm.py) and
its stopping rule (stopping.py), the scalar functions (matfuncs.py), argument and result
checks (validate.py), the compiled-op wrappers (ops.py) and the backend choice (backend.py);
stochastic Lanczos quadrature for log-determinants and traces at any shift (quadrature.py).
Nothing here knows about user operator types, models or posteriors.
"""

from . import ops
from .backend import backend_info
from .funm import FunmInfo, funm_block
from .lanczos import LanczosResult, lanczos_full, lanczos_three_term, run_lanczos
from .quadrature import Estimate, ShiftedQuadrature, rademacher
from .tridiag import tridiag_eigh

__all__ = ["Estimate", "FunmInfo", "LanczosResult", "ShiftedQuadrature", "backend_info",
           "funm_block", "lanczos_full", "lanczos_three_term", "ops", "rademacher", "run_lanczos",
           "tridiag_eigh"]
