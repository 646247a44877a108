"""``Normalization``: ``(x - mean) / sqrt(variance)`` with statistics given or learned by ``adapt``.

``adapt`` streams the data in batches and merges their moments with Keras's formula (population
variance), accumulating in float64; the results live in the non-trainable weights ``mean``,
``variance`` (and ``count``, kept at 0 as in Keras, for the same weight list), so that
``save_weights``/``get_weights`` carry them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ... import config
from ..layer import Layer

__all__ = ["Normalization"]

_CHUNK_VALUES = 1 << 23  # arrays are reduced in float64 slices of about 64 MB


def _first_of(batch: Any) -> Any:
    return batch[0] if isinstance(batch, tuple) else batch


def _as_float64(batch: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(batch)) if not isinstance(batch, torch.Tensor) else batch.detach()
    return t.to("cpu" if t.device.type == "mps" else t.device, torch.float64)


class Normalization(Layer):
    """Shift and scale inputs to zero mean and unit variance along ``axis``, as Keras does.

    Args:
        axis: the axis (or axes) that keep a separate mean and variance per index; -1 (the
            default) is one statistic per feature or channel, ``None`` a single scalar.
        mean: fixed mean(s), broadcast to the kept axes; give ``variance`` with it.
        variance: fixed variance(s), same shape as ``mean``.
        invert: apply the inverse, ``mean + x * sqrt(variance)``.

    Example:
        >>> import numpy as np
        >>> layer = Normalization(axis=None)
        >>> layer.adapt(np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype="float32"))
        >>> layer(np.array([1.0, 2.0, 3.0], dtype="float32"))
        tensor([-1.4142, -0.7071,  0.0000])
    """

    _masks_by_default = True

    def __init__(
        self,
        axis: int | tuple[int, ...] | None = -1,
        mean: Any = None,
        variance: Any = None,
        invert: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, int) and not isinstance(axis, bool):
            axis = (axis,)
        elif isinstance(axis, (list, tuple)) and all(isinstance(a, int) for a in axis):
            axis = tuple(axis)
        else:
            raise TypeError(f"Normalization: axis must be an int, a tuple of ints or None, got {axis!r}.")
        self.axis = axis
        if (mean is None) != (variance is None):
            raise ValueError(
                "Normalization: give both mean= and variance= (or neither, and call adapt()); got "
                f"mean={mean!r} and variance={variance!r}."
            )
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise ValueError(
                    f"Normalization: mean and variance must have the same shape, got {np.shape(mean)} "
                    f"and {np.shape(variance)}."
                )
            if len(np.shape(mean)) > len(self.axis):
                raise ValueError(
                    f"Normalization: mean has rank {len(np.shape(mean))}, more than the {len(self.axis)} "
                    f"kept axes of axis={axis!r}."
                )
        self.input_mean = None if mean is None else np.asarray(mean, dtype=float)
        self.input_variance = None if variance is None else np.asarray(variance, dtype=float)
        self.invert = bool(invert)

    # --------------------------------------------------------------------- build
    def build(self, input_shape: Any) -> None:
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(
                f"Normalization {self.name!r}: axis={self.axis} is out of range for inputs of rank "
                f"{ndim} (shape {tuple(input_shape)})."
            )
        keep = tuple(sorted(a % ndim for a in self.axis))
        for d in keep:
            if input_shape[d] is None:
                raise ValueError(
                    f"Normalization {self.name!r}: the kept axis {d} of input shape {tuple(input_shape)} "
                    "must have a known size."
                )
        self._build_input_shape = tuple(input_shape)
        self._keep_axis = keep
        self._reduce_axis = tuple(d for d in range(ndim) if d not in keep)
        self._broadcast_shape = tuple(input_shape[d] if d in keep else 1 for d in range(ndim))
        shape = tuple(input_shape[d] for d in keep)
        if self.input_mean is None:
            self.add_weight(shape, "zeros", trainable=False, name="mean")
            self.add_weight(shape, "ones", trainable=False, name="variance")
            self.add_weight((), "zeros", dtype="int32", trainable=False, name="count")
        else:
            dtype, device = getattr(torch, self.dtype), config.get_device()
            for name, value in (("mean", self.input_mean), ("variance", self.input_variance)):
                t = torch.as_tensor(value, dtype=dtype)
                expanded = [1] * ndim
                for i in range(1, t.dim() + 1):  # align the given dims with the kept axes, from the right
                    expanded[keep[-i]] = t.shape[-i]
                t = t.reshape(expanded).expand(self._broadcast_shape).contiguous()
                self.register_buffer(name, t.to(device), persistent=False)
        self.built = True

    # --------------------------------------------------------------------- call
    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        dtype = getattr(torch, self.dtype)
        x = inputs.to(dtype)
        mean = self.mean.reshape(self._broadcast_shape).to(dtype)
        std = torch.clamp_min(self.variance.reshape(self._broadcast_shape).to(dtype).sqrt(), config.epsilon())
        return mean + x * std if self.invert else (x - mean) / std

    # --------------------------------------------------------------------- adapt
    def adapt(self, data: Any) -> None:
        """Compute the mean and variance of ``data`` and store them in the layer's weights.

        Args:
            data: a numpy array or tensor (one big batch), a ``tapefit.data.Dataset`` of batches
                (``(x, y)`` elements use ``x``; a dataset of single vectors is batched by 128,
                as Keras does), or any iterable of batches (arrays or tensors).
        """
        shape, batches = self._adapt_source(data)
        if not self.built:
            self.build(shape)
        elif self.input_mean is not None:
            raise ValueError(
                f"Normalization {self.name!r} was given mean= and variance=, so adapt() has nothing to "
                "learn: create the layer without them to adapt it."
            )
        total_mean = total_var = None
        total_count = 0
        for batch in batches:
            batch = _as_float64(_first_of(batch))
            self._check_adapt_shape(tuple(batch.shape))
            if self._reduce_axis:
                batch_var, batch_mean = torch.var_mean(batch, dim=self._reduce_axis, correction=0)
                count = math.prod(batch.shape[d] for d in self._reduce_axis)
            else:
                batch_mean, batch_var, count = batch, torch.zeros_like(batch), 1
            if count == 0:
                continue
            if total_mean is None:
                total_mean, total_var, total_count = batch_mean, batch_var, count
                continue
            total_count += count
            w = count / total_count
            new_mean = total_mean * (1 - w) + batch_mean * w
            total_var = (total_var + (total_mean - new_mean) ** 2) * (1 - w) + (
                batch_var + (batch_mean - new_mean) ** 2
            ) * w
            total_mean = new_mean
        if total_mean is None:
            raise ValueError(f"Normalization {self.name!r}.adapt() received no data: the batches were empty.")
        with torch.no_grad():
            self.mean.copy_(total_mean.to(self.mean.device, self.mean.dtype))
            self.variance.copy_(total_var.to(self.variance.device, self.variance.dtype))

    def _check_adapt_shape(self, shape: tuple) -> None:
        built = self._build_input_shape
        if len(shape) != len(built) or any(shape[d] != built[d] for d in self._keep_axis):
            raise ValueError(
                f"Normalization {self.name!r} was built for inputs of shape {built}, but adapt() got a "
                f"batch of shape {shape}: the kept axes {self._keep_axis} must match."
            )

    def _adapt_source(self, data: Any) -> tuple[tuple, Iterable]:
        from ...data import Dataset
        from ...data.spec import INFINITE_CARDINALITY

        if isinstance(data, (np.ndarray, torch.Tensor)):
            return tuple(data.shape), self._chunks(data)
        if isinstance(data, Dataset):
            if data.cardinality() == INFINITE_CARDINALITY:
                raise ValueError(
                    "Normalization.adapt() got an infinite dataset (repeat() without a count): pass "
                    "dataset.take(n) to adapt on n batches."
                )
            spec = _first_of(data.element_spec)
            if len(spec.shape) == 1:
                data = data.batch(128)
        elif isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
            raise TypeError(
                f"Normalization.adapt() expects a numpy array, a tensor, a tapefit.data.Dataset or an "
                f"iterable of batches, got {type(data).__name__}."
            )
        iterator: Iterator = iter(data)
        first = next(iterator, None)
        if first is None:
            raise ValueError("Normalization.adapt() received an empty iterable: give at least one batch.")
        x = _first_of(first)
        if not hasattr(x, "shape"):
            raise TypeError(
                "Normalization.adapt() expects batches that are arrays or tensors; got an element of type "
                f"{type(x).__name__} (wrap plain lists with np.asarray)."
            )
        return tuple(x.shape), itertools.chain([first], iterator)

    def _chunks(self, data: np.ndarray | torch.Tensor) -> Iterator:
        if data.ndim == 0 or 0 not in self._reduce_axis:
            yield data
            return
        rows = max(1, _CHUNK_VALUES // max(1, math.prod(data.shape[1:])))
        for start in range(0, data.shape[0], rows):
            yield data[start : start + rows]

    # -------------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": self.axis,
            "invert": self.invert,
            "mean": None if self.input_mean is None else self.input_mean.tolist(),
            "variance": None if self.input_variance is None else self.input_variance.tolist(),
        }
