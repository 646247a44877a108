"""``Rescaling``: ``inputs * scale + offset`` in the float type, for any tensor (Keras 3 semantics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensor

from ... import config
from ..layer import Layer

__all__ = ["Rescaling"]


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return float(value) if value.ndim == 0 else value.astype(float).tolist()
    if isinstance(value, (list, tuple)):
        return np.asarray(value, dtype=float).tolist()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"Rescaling: scale and offset must be numbers or arrays, got {value!r}.")
    return float(value)


class Rescaling(Layer):
    """Multiply by ``scale`` and add ``offset``, during training and inference alike.

    Integer inputs (``uint8`` images) come out in the float type. ``scale``/``offset`` may be
    arrays, broadcast against the last axis (or against the channel axis of
    ``(C, H, W)``-shaped images when ``image_data_format()`` is ``"channels_first"``).

    Args:
        scale: the factor to multiply by, e.g. ``1/255`` for [0, 255] to [0, 1].
        offset: the value added afterwards, e.g. ``-1`` with ``scale=1/127.5`` for [-1, 1].

    Example:
        >>> import torch
        >>> Rescaling(1 / 127.5, offset=-1)(torch.tensor([0, 255], dtype=torch.uint8))
        tensor([-1.,  1.])
    """

    _masks_by_default = True

    def __init__(self, scale: Any, offset: Any = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.scale = _plain(scale)
        self.offset = _plain(offset)
        self._constants: dict[tuple, tuple[Any, Any]] = {}

    def _operands(self, like: torch.Tensor) -> tuple[Any, Any]:
        key = (like.device, like.dtype)
        if key not in self._constants or isinstance(like, FakeTensor):
            # Arrays become tensors once per device and dtype, not once per batch.
            scale, offset = (
                v if isinstance(v, float) else torch.tensor(v, dtype=like.dtype, device=like.device)
                for v in (self.scale, self.offset)
            )
            if config.image_data_format() == "channels_first" and isinstance(scale, torch.Tensor):
                scale = scale.reshape(*scale.shape, *(1,) * (3 - scale.dim()))
            if isinstance(like, FakeTensor):  # shape inference: nothing real to keep
                return scale, offset
            self._constants[key] = (scale, offset)
        return self._constants[key]

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs.to(getattr(torch, self.dtype))
        scale, offset = self._operands(x)
        return x * scale + offset

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
