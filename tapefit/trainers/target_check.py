"""In-memory labels checked against the compiled loss once, on the host, before the first step.

The losses check their labels batch by batch (an out-of-range class id, class ids given to a
binary loss, a shape that does not fit), but a bad label in the last batch would then be found
after the earlier batches changed the weights, and on a GPU not at all (the check would be a
device sync per step). For arrays and tensors given to ``fit``, the whole ``y`` is run through
the loss once, against a stand-in prediction of the model's output shape, before training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .data_adapters import is_dataset_like, map_leaves

__all__ = ["check_targets_up_front"]

_MAX_PROBE_ELEMENTS = 1 << 24


def check_targets_up_front(model: Any, x: Any, y: Any) -> None:
    """Raise the compiled loss's own ValueError for bad in-memory labels; nothing else escapes."""
    if y is None or isinstance(y, (dict, list, tuple)) or is_dataset_like(x) or hasattr(x, "__next__"):
        return
    from ..losses import get as get_loss

    loss = (getattr(model, "_compile_config", None) or {}).get("loss")
    if loss is None or isinstance(loss, (dict, list, tuple)):
        return
    try:
        loss_fn = get_loss(loss)
        labels = y.detach().cpu() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
        with torch.no_grad():
            out = model(map_leaves(lambda a: a[:1], x), training=False)
    except Exception:  # the first step reports whatever is wrong here, in context
        return
    if not isinstance(out, torch.Tensor) or len(labels) * out[0].numel() > _MAX_PROBE_ELEMENTS:
        return
    probe = torch.full((len(labels), *out.shape[1:]), 0.5)  # a valid probability for every loss
    try:
        loss_fn(labels, probe)
    except ValueError:
        raise
    except Exception:
        return
