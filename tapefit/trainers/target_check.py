"""Labels checked against the compiled loss on the host, before they reach the model.

The losses check their labels batch by batch (an out-of-range class id, class ids given to a
binary loss, a shape that does not fit), but only for CPU tensors: on a GPU the check would be
a device sync per step, and a bad class id would end in an asynchronous device-side assert.
So ``fit`` runs the labels through the loss on the host, against a stand-in prediction of the
model's output shape: all of ``y`` once before the first step for arrays and tensors (so a bad
label in the last batch is found before any weight changes), and each batch before it is
copied to the GPU for Datasets, DataLoaders and generators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..layers.symbolic import shape_probe
from ..utils.data_utils import unpack_x_y_sample_weight
from .data_adapters import is_dataset_like, map_leaves

__all__ = ["check_batches_on_the_host", "check_targets_up_front", "label_checker"]

_MAX_PROBE_ELEMENTS = 1 << 24


def label_checker(model: Any, sample_x: Any) -> Callable[[Any], None] | None:
    """A function that raises the compiled loss's ValueError for bad host labels, or ``None`` when
    the model has several outputs or losses (their own checks apply then)."""
    from ..losses import get as get_loss

    loss = (getattr(model, "_compile_config", None) or {}).get("loss")
    if loss is None or isinstance(loss, (dict, list, tuple)) or sample_x is None:
        return None
    try:
        loss_fn = get_loss(loss)
        with torch.no_grad(), shape_probe():
            out = model(map_leaves(lambda a: a[:1], sample_x), training=False)
    except Exception:  # the first step reports whatever is wrong here, in context
        return None
    if not isinstance(out, torch.Tensor):
        return None
    row_shape = tuple(out.shape[1:])

    def check(y: Any) -> None:
        if isinstance(y, (dict, list, tuple)):
            return
        labels = y.detach().cpu() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
        if labels.dim() == 0 or len(labels) * max(1, int(np.prod(row_shape))) > _MAX_PROBE_ELEMENTS:
            return
        probe = torch.full((len(labels), *row_shape), 0.5)  # a valid probability for every loss
        try:
            loss_fn(labels, probe)
        except ValueError:
            raise
        except Exception:
            return

    return check


def check_targets_up_front(model: Any, x: Any, y: Any) -> None:
    """For arrays and tensors: all of ``y`` through the loss once, before the first step."""
    if y is None or isinstance(y, (dict, list, tuple)) or is_dataset_like(x) or hasattr(x, "__next__"):
        return
    check = label_checker(model, x)
    if check is not None:
        check(y)


def check_batches_on_the_host(model: Any, adapter: Any) -> None:
    """For batches copied to an accelerator each step: check each batch's labels before the copy."""
    if adapter.device.type == "cpu" or not hasattr(adapter, "host_check"):
        return  # on the CPU the losses check the labels themselves
    first = adapter.peek()
    if first is None:
        return
    adapter.host_check = label_checker(model, unpack_x_y_sample_weight(first)[0])
