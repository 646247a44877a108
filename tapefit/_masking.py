"""Keras's padding masks: a boolean tensor riding on a layer's output as ``_keras_mask``.

A mask marks the timesteps that hold data (True) and the padding (False). ``Embedding(mask_zero=
True)``, ``Masking`` and ``Lambda(mask=)`` create one; layers that support masking carry it to
their outputs; the recurrent layers, ``GlobalAveragePooling1D``, ``BatchNormalization``, the
merges and ``Softmax`` use it; losses and metrics leave masked entries out. The calling side
lives in ``layers/_calling``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["MASK_ATTR", "any_mask", "flat", "get_mask", "keep_mask", "masks_of", "set_mask"]

MASK_ATTR = "_keras_mask"


def get_mask(x: Any) -> torch.Tensor | None:
    """The mask attached to ``x``, if any."""
    return getattr(x, MASK_ATTR, None)


def set_mask(x: torch.Tensor, mask: torch.Tensor | None) -> None:
    """Attach ``mask`` to ``x`` (as Keras does, on the tensor object itself)."""
    setattr(x, MASK_ATTR, mask)


def keep_mask(source: Any, converted: torch.Tensor) -> torch.Tensor:
    """``converted`` (a cast, moved or copied ``source``) carrying ``source``'s mask, on its device."""
    mask = get_mask(source)
    if mask is not None:
        set_mask(converted, mask.to(converted.device, non_blocking=True))
    return converted


def masks_of(x: Any) -> Any:
    """The masks of a tensor or of a list/tuple/dict of them, in the same structure (None where unmasked)."""
    if isinstance(x, (list, tuple)):
        return [masks_of(v) for v in x]
    if isinstance(x, dict):
        return {k: masks_of(v) for k, v in x.items()}
    return get_mask(x)


def any_mask(masks: Any) -> bool:
    """Whether a structure returned by :func:`masks_of` holds at least one mask."""
    if isinstance(masks, (list, tuple)):
        return any(any_mask(m) for m in masks)
    if isinstance(masks, dict):
        return any(any_mask(m) for m in masks.values())
    return masks is not None


def flat(x: Any) -> list[Any]:
    """The leaves of a list/tuple/dict structure, in order (``[x]`` for a leaf, None included)."""
    if isinstance(x, (list, tuple)):
        return [v for s in x for v in flat(s)]
    if isinstance(x, dict):
        return [v for s in x.values() for v in flat(s)]
    return [x]
