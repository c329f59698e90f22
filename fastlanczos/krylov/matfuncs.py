"""Scalar functions applied to the Ritz values (float64), and what each needs of the operator."""

import torch

from ..errors import LanczosInputError

# name -> (function of float64 eigenvalues, requirement on the spectrum)
_NAMED = {
    "inv_sqrt": (torch.rsqrt, "positive"),
    "sqrt": (lambda t: torch.sqrt(t.clamp_min(0.0)), "nonnegative"),
    "inv": (torch.reciprocal, "positive"),
    "exp": (torch.exp, None),
    "log": (torch.log, "positive"),
}


def resolve(f):
    """Return (name, function, requirement) for a name in _NAMED or a callable."""
    if isinstance(f, str):
        if f not in _NAMED:
            raise LanczosInputError(f"unknown matrix function {f!r}; choose one of "
                                    f"{sorted(_NAMED)} or pass a callable")
        fn, need = _NAMED[f]
        return f, fn, need
    if callable(f):
        return getattr(f, "__name__", "callable"), f, None
    raise LanczosInputError(f"f must be a name or a callable, got {type(f).__name__}")
