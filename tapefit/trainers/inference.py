"""When ``evaluate`` and ``predict`` may run under ``torch.inference_mode``.

Inference mode skips the autograd bookkeeping that ``no_grad`` still pays for on every op
(version counters, view tracking): a few percent of a small model's evaluation step. Its
price is that a tensor made inside it can never join autograd later, so the trainer uses it
only when no such tensor can outlive the call, and only after the first batch, which builds
whatever builds lazily (weights, compiled metrics).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from ..distribute.checkpointing import is_sharded_tensor
from .data_adapters import ArrayAdapter

__all__ = ["inference_is_safe"]

_LIBRARY_MODULES = ("tapefit.", "torch.")


def inference_is_safe(model: torch.nn.Module, adapter: Any, step: str, default_step: Any) -> bool:
    """Whether the batches after the first may run under ``torch.inference_mode``.

    True when nothing made during the call can be kept for a later training step:

    - ``step`` (``"test_step"`` / ``"predict_step"``) is tapefit's own ``default_step``, not
      a user's, which could store what it computes;
    - the batches are slices of in-memory arrays (a ``Dataset`` may cache its elements);
    - every module in the model is tapefit's or torch's (a user's layer may cache a tensor);
    - no weight is sharded (FSDP keeps gathered weights between calls).
    """
    if getattr(type(model), step) is not default_step or not isinstance(adapter, ArrayAdapter):
        return False
    for module in model.modules():
        if not type(module).__module__.startswith(_LIBRARY_MODULES):
            return False
    if dist.is_available() and dist.is_initialized():
        return not any(is_sharded_tensor(p) for p in model.parameters())
    return True
