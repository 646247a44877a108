"""``Sequential``: a plain stack of layers, each feeding the next.

The forward pass is a direct loop over the layers. When the input shape is known (an
``Input`` first, ``input_shape=`` on the first layer, or ``build(shape)``), the stack is also
traced symbolically once, which builds every layer and records output shapes for ``summary``
and ``plot_model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._masking import set_mask
from ..jit import _tracing
from ..layers._calling import _call_context
from ..layers.layer import Layer, _structure_cached, _structure_changed
from ..layers.symbolic import Input, InputLayer, KerasTensor
from .model import Model, _check_shape

__all__ = ["Sequential"]


class Sequential(Model):
    """A linear stack of layers.

    Example:
        >>> import tapefit
        >>> model = tapefit.Sequential([
        ...     tapefit.Input((4,)),
        ...     tapefit.layers.Dense(8, activation="relu"),
        ...     tapefit.layers.Dense(3),
        ... ])
        >>> model.output_shape
        (None, 3)
    """

    def __init__(self, layers: Sequence[Any] | None = None, name: str | None = None, trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self._stack = nn.ModuleList()
        self._input: KerasTensor | None = None
        self._outputs: list[KerasTensor] = []
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_trace()

    def add(self, layer: Any, rebuild: bool = True) -> None:
        """Append a layer (or an ``Input``, which must come first)."""
        if isinstance(layer, KerasTensor):
            layer = layer._keras_history[0]
        if isinstance(layer, InputLayer):
            if len(self._stack) or self._input is not None:
                raise ValueError("Sequential: an Input can only be the first element.")
            self._input = layer.output
            self.built = False
            if rebuild:
                self._maybe_trace()
            return
        if not isinstance(layer, nn.Module):
            raise TypeError(
                f"Sequential.add expects a layer (or any torch.nn.Module), got {type(layer).__name__}."
            )
        if not isinstance(layer, Layer):
            from ..layers.core import TorchModuleWrapper

            layer = TorchModuleWrapper(layer)
        if any(existing.name == layer.name for existing in self._stack):
            raise ValueError(
                f"Sequential {self.name!r} already has a layer named {layer.name!r}; layer names in a "
                "model must be unique."
            )
        self._stack.append(layer)
        _structure_changed()
        self.built = False
        if rebuild:
            self._maybe_trace()

    def pop(self, rebuild: bool = True) -> Layer:
        """Remove and return the last layer."""
        if not len(self._stack):
            raise ValueError(f"Sequential {self.name!r} has no layers to pop.")
        layer = self._stack[-1]
        del self._stack[-1]
        _structure_changed()
        self.built = False
        if rebuild:
            self._maybe_trace()
        return layer

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)

    def _maybe_trace(self) -> None:
        if self._input is None and len(self._stack):
            first = self._stack[0]
            shape = getattr(first, "_batch_input_shape", None)
            if shape is not None:
                self._input = Input(batch_shape=shape)
        if self._input is not None and len(self._stack):
            self._trace(self._input)

    def _trace(self, x: KerasTensor) -> None:
        outputs = []
        for layer in self._stack:
            x = layer(x)
            if not isinstance(x, KerasTensor):
                raise ValueError(
                    f"Sequential: layer {layer.name!r} returned several tensors; every layer in a "
                    "Sequential model must return one tensor. Use the functional API instead."
                )
            layer._last_output_shape = x.shape
            outputs.append(x)
        self._outputs = outputs
        self.built = True

    def build(self, input_shape: Any = None) -> None:
        """Build every layer for inputs of ``input_shape`` (batch dimension included, may be None)."""
        if input_shape is None:
            if self._input is None:
                raise ValueError(
                    f"Sequential {self.name!r}.build() needs input_shape, e.g. build((None, 784))."
                )
        else:
            self._input = Input(batch_shape=tuple(input_shape))
        self._trace(self._input)

    def _build_from_call(self, args: tuple, kwargs: dict) -> None:
        first = args[0] if args else kwargs.get("inputs")
        if isinstance(first, torch.Tensor) and not self._stack:
            raise ValueError(f"Sequential {self.name!r} has no layers.")
        if isinstance(first, torch.Tensor):
            self.build((None, *tuple(first.shape[1:])))
        self.built = True

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        x = inputs
        if type(x) is not torch.Tensor:
            x = self._single_input(x)
        if self._input is not None and x.dtype is not self._input.dtype:
            x = x.to(self._input.dtype)  # as Keras converts inputs to the Input's dtype (int x included)
        if mask is not None:
            set_mask(x, mask)
        for layer in self._layer_tuple():
            x = layer(x)
        return x

    def _single_input(self, x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x
        if isinstance(x, dict):
            got = f"a dict with keys {sorted(x)}"
        elif isinstance(x, (list, tuple)):
            got = f"a {type(x).__name__} of {len(x)} inputs"
        else:
            return torch.as_tensor(x)
        raise ValueError(
            f"Sequential model {self.name!r} takes one input tensor, but received {got}. A dataset for it "
            "must yield (x, y) or (x, y, sample_weight) with x a single array; for several inputs build a "
            "functional model (tapefit.Model(inputs, outputs))."
        )

    def _layer_tuple(self) -> tuple[Layer, ...]:
        """The layers as a tuple, cached per structure version (iterating the ModuleList costs more)."""
        return _structure_cached(self, "_layer_tuple_cache", lambda: tuple(self._stack))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._input is not None and _call_context[1] == 0 and args and isinstance(args[0], torch.Tensor):
            shape, checked = args[0].shape, self.__dict__.get("_checked_shape")
            if _tracing():  # traced, it runs at trace time; a cache would be a guard
                _check_shape(self.name, self._input, tuple(shape))
            elif checked is None or checked[0] is not self._input or checked[1] != shape:
                _check_shape(self.name, self._input, tuple(shape))  # once per input spec and batch shape
                self.__dict__["_checked_shape"] = (self._input, shape)
        return Layer.__call__(self, *args, **kwargs)

    @property
    def inputs(self) -> list[KerasTensor] | None:
        return [self._input] if self._input is not None else None

    @property
    def outputs(self) -> list[KerasTensor] | None:
        return self._outputs[-1:] if self._outputs else None

    @property
    def input_shape(self) -> Any:
        if self._input is None:
            raise AttributeError(
                f"Sequential {self.name!r} has no input shape yet: give the first layer "
                "input_shape=, start with tapefit.Input(...), or call build()."
            )
        return self._input.shape

    @property
    def output_shape(self) -> Any:
        if not self._outputs:
            raise AttributeError(f"Sequential {self.name!r} is not built yet, so it has no output shape.")
        return self._outputs[-1].shape

    @property
    def output_names(self) -> list[str]:
        return [self.layers[-1].name] if self.layers else []

    def get_config(self) -> dict[str, Any]:
        from ..saving.serialization import sequential_config

        return sequential_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Sequential:
        from ..saving.serialization import sequential_from_config

        return sequential_from_config(cls, config, custom_objects)
