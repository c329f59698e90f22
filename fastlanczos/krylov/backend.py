"""Which implementation runs: the compiled extension (fastlanczos._C) or plain torch.

FASTLANCZOS_BACKEND=torch forces the pure-torch path (for comparisons and debugging);
otherwise the compiled ops are used whenever they are built for the tensors' device.
"""

import os

import torch

from . import ops


def use_extension(device: torch.device) -> bool:
    if os.environ.get("FASTLANCZOS_BACKEND", "").lower() == "torch":
        return False
    return ops.supports(device)


def backend_info() -> dict:
    """Describe the backend in use, e.g. {'extension': True, 'cuda_kernels': False, ...}."""
    forced = os.environ.get("FASTLANCZOS_BACKEND", "").lower() == "torch"
    cuda = ops.available() and ops.supports(torch.device("cuda"))
    return {
        "extension": ops.available(),
        "cuda_kernels": cuda,
        "forced_torch": forced,
        "cpu": "torch" if forced or not ops.available() else "extension",
        "cuda": "extension" if cuda and not forced else "torch",
        "torch": torch.__version__,
    }
