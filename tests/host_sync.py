"""Count, on any device, the operations that would make a CUDA run wait for the host.

torch.cuda.set_sync_debug_mode only exists where a GPU does; this probe lets the CPU test
suite check the same property of the Python layer. It watches every aten call (a
TorchDispatchMode) and the Tensor methods that copy to the host (a TorchFunctionMode), and
counts:
  - reads of a device value into Python: item(), bool(t), int(t), float(t), tolist();
  - copies to the host: .cpu(), .numpy() (not .to(device): on a CPU run the compute device
    and the host are the same, so that call cannot be told apart);
  - ops whose output size depends on the data (nonzero, masked_select, unique, ...);
  - torch.linalg.eigh, whose CUDA version reads cuSOLVER's info flag back to raise errors.
Tensors that came from a host copy, and everything computed only from them, are host
tensors: working on them costs nothing, as it would not on a GPU either.
Compiled ops are seen as one call each; their C++ insides are not.
"""

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary

aten = torch.ops.aten
_SYNCING = {
    aten._local_scalar_dense, aten.is_nonzero, aten.equal, aten.nonzero, aten.masked_select,
    aten._unique2, aten.unique_dim, aten.unique_consecutive, aten.repeat_interleave,
    aten._linalg_eigh, aten.argwhere,
}
_TO_HOST = {torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.tolist}


def _tensors(args, kwargs):
    return [x for x in tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]


class HostSyncProbe:
    """with HostSyncProbe() as probe: ...; then probe.count and probe.events (op names)."""

    def __init__(self):
        self.events = []
        self.host = WeakTensorKeyDictionary()
        probe = self

        class Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func not in _TO_HOST:
                    return func(*args, **kwargs)
                src = args[0]
                if src not in probe.host:
                    probe.events.append(f"Tensor.{func.__name__}")
                out = func(*args, **kwargs)
                if isinstance(out, torch.Tensor):
                    out = out.clone() if out is src else out  # a new host tensor, as on a GPU
                    probe.host[out] = True
                return out

        class Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                inputs = _tensors(args, kwargs)
                on_host = bool(inputs) and all(t in probe.host for t in inputs)
                if func.overloadpacket in _SYNCING and not on_host:
                    probe.events.append(str(func.overloadpacket))
                out = func(*args, **kwargs)
                if on_host:
                    for t in _tensors(out, {}):
                        probe.host[t] = True
                return out

        self._modes = [Functions(), Dispatch()]

    @property
    def count(self):
        return len(self.events)

    def __enter__(self):
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        return False
