"""Core layers without a family of their own: ``Embedding``, ``Activation``, ``Lambda``, ``Identity``
and ``TorchModuleWrapper`` (any ``torch.nn.Module`` as a layer)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import activations, config, constraints, initializers, regularizers
from .._masking import set_mask
from .layer import Layer

__all__ = ["Activation", "Embedding", "Identity", "Lambda", "Masking", "TorchModuleWrapper"]


class Embedding(Layer):
    """Turns integer indices into dense vectors of size ``output_dim``: ``embeddings[inputs]``.

    The table has shape ``(input_dim, output_dim)``; indices may be of any integer dtype (other
    dtypes are cast, as Keras does) and the output gains a trailing ``output_dim`` axis.
    ``mask_zero=True`` treats index 0 as padding: the output carries the mask ``inputs != 0``,
    which the layers after it (``GlobalAveragePooling1D``, losses, metrics) respect.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Embedding(10, 4)(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 4])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        embeddings_constraint: Any = None,
        mask_zero: bool = False,
        weights: Any = None,
        activity_regularizer: Any = None,
        input_length: int | None = None,
        **kwargs: Any,
    ):
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Embedding: {arg} must be a positive integer, got {value!r}.")
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self._produces_mask = self.mask_zero
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        if weights is not None:
            self.build()
            self.set_weights(weights if isinstance(weights, (list, tuple)) else [weights])

    def build(self, input_shape: Any = None) -> None:
        if self.built:
            return
        self.embeddings = self.add_weight(
            (self.input_dim, self.output_dim),
            self.embeddings_initializer,
            name="embeddings",
            regularizer=self.embeddings_regularizer,
            constraint=self.embeddings_constraint,
        )
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dtype not in (torch.int32, torch.int64):
            inputs = inputs.to(torch.int64)
        y = F.embedding(inputs, self.embeddings)
        if self.activity_regularizer is not None:
            self.add_loss(self.activity_regularizer(y) / y.shape[0])
        return y

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> torch.Tensor | None:
        """With ``mask_zero``, index 0 is padding: the mask is ``inputs != 0``."""
        return torch.ne(inputs, 0) if self.mask_zero else None

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
            "mask_zero": self.mask_zero,
        }


class Activation(Layer):
    """Applies an activation function (a name such as ``"relu"`` or a callable) to its input.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Activation("relu")(torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """

    _preserves_shape = True
    _masks_by_default = True

    def __init__(self, activation: str | Callable, **kwargs: Any):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.activation(inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Identity(Layer):
    """Returns its input unchanged (a placeholder that keeps a model's structure)."""

    _preserves_shape = True
    _masks_by_default = True

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.built = True

    def call(self, inputs: Any) -> Any:
        return inputs


def _function_name(fn: Callable, layer_name: str, what: str) -> str:
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and activations._ALL.get(name) is fn:
        return name
    from ..saving.registry import registered_name

    try:
        return registered_name(fn)
    except ValueError:
        raise ValueError(
            f"Lambda layer {layer_name!r} cannot be saved by config: its {what} {name or fn!r} is not "
            "registered. Define it with `def` and decorate it with "
            "@tapefit.saving.register_serializable() so that it is saved by name, or save only the weights "
            "with model.save_weights(...). Functions are never saved as code."
        ) from None


def _resolve_function(name: str, custom_objects: dict[str, Any] | None = None) -> Callable:
    if name in activations._ALL:
        return activations._ALL[name]
    from ..saving.registry import resolve

    return resolve(name, custom_objects)


class Masking(Layer):
    """Masks the timesteps whose features all equal ``mask_value``, for the layers after it.

    The output is the input with those timesteps set to zero, carrying the mask (batch, steps):
    ``GlobalAveragePooling1D`` then averages only the kept steps, and losses and metrics skip
    them. Layers that cannot keep a mask drop it with a warning.

    Example:
        >>> import torch, tapefit
        >>> x = torch.tensor([[[1.0], [0.0], [3.0]]])
        >>> tapefit.layers.Masking()(x)._keras_mask
        tensor([[ True, False,  True]])
    """

    _preserves_shape = True
    _produces_mask = True

    def __init__(self, mask_value: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.mask_value = mask_value
        self.built = True

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> torch.Tensor:
        return torch.any(torch.ne(inputs, self.mask_value), dim=-1)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        keep = self.compute_mask(inputs)
        outputs = torch.where(
            keep.unsqueeze(-1), inputs, torch.zeros((), dtype=inputs.dtype, device=inputs.device)
        )
        set_mask(outputs, keep)
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_value": self.mask_value}


class Lambda(Layer):
    """Wraps a function of tensors as a layer: ``function(inputs, **arguments)``.

    The output shape is inferred by running the function symbolically, so ``output_shape`` is
    only needed to override it. To save a model that holds a Lambda, register the function with
    ``@tapefit.saving.register_serializable()``: configs name functions, they never hold code.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Lambda(lambda x: x * 2)(torch.ones(2))
        tensor([2., 2.])
    """

    def __init__(
        self,
        function: Callable,
        output_shape: Any = None,
        mask: Any = None,
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if isinstance(function, str):
            function = _resolve_function(function)
        if not callable(function):
            raise TypeError(f"Lambda: function must be callable, got {type(function).__name__}.")
        if isinstance(mask, str):
            mask = _resolve_function(mask)
        if isinstance(output_shape, str):
            output_shape = _resolve_function(output_shape)
        elif isinstance(output_shape, list):
            output_shape = tuple(output_shape)
        super().__init__(**kwargs)
        self.function = function
        self.arguments = dict(arguments or {})
        self._output_shape = output_shape
        self._fn_expects_training = _accepts_keyword(function, "training")
        self._fn_expects_mask = _accepts_keyword(function, "mask")
        self.mask = mask
        self.supports_masking = self._produces_mask = mask is not None
        self.built = True

    def call(self, inputs: Any, mask: Any = None, training: bool | None = None) -> Any:
        kwargs = dict(self.arguments)
        if self._fn_expects_training:
            kwargs["training"] = training
        if self._fn_expects_mask:
            kwargs["mask"] = mask
        return self.function(inputs, **kwargs)

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> Any:
        """``mask(inputs, previous_mask)`` when ``mask`` is a function, else the ``mask`` given."""
        if callable(self.mask):
            return self.mask(inputs, previous_mask)
        return self.mask

    def compute_output_shape(self, input_shape: Any) -> Any:
        if self._output_shape is None:
            return super().compute_output_shape(input_shape)
        if callable(self._output_shape):
            return self._output_shape(input_shape)
        first = input_shape[0] if input_shape and isinstance(input_shape[0], (list, tuple)) else input_shape
        return (first[0], *self._output_shape)

    def get_config(self) -> dict[str, Any]:
        config_ = {
            **super().get_config(),
            "function": _function_name(self.function, self.name, "function"),
            "arguments": self.arguments,
        }
        if self._output_shape is not None:
            config_["output_shape"] = (
                _function_name(self._output_shape, self.name, "output_shape function")
                if callable(self._output_shape)
                else list(self._output_shape)
            )
        if self.mask is not None:
            if not callable(self.mask):
                raise ValueError(
                    f"Lambda layer {self.name!r} cannot be saved by config: its mask is a fixed tensor. "
                    "Give a registered function that computes the mask instead, or save only the "
                    "weights with model.save_weights(...)."
                )
            config_["mask"] = _function_name(self.mask, self.name, "mask function")
        return config_

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Lambda:
        """Rebuild from a config whose functions are registered names (see ``register_serializable``)."""
        config = dict(config)
        config["function"] = _resolve_function(config["function"], custom_objects)
        for key in ("output_shape", "mask"):
            if isinstance(config.get(key), str):
                config[key] = _resolve_function(config[key], custom_objects)
        return cls(**config)


def _accepts_keyword(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


class TorchModuleWrapper(Layer):
    """Puts any ``torch.nn.Module`` in a model: its parameters (and float buffers) become this
    layer's weights, trained with the rest; ``training`` switches it to ``train()`` or ``eval()``.

    A wrapped module cannot be described by a config (that would mean pickling code), so models
    holding one are saved with ``save_weights`` and rebuilt in code.

    Example:
        >>> import torch, tapefit
        >>> layer = tapefit.layers.TorchModuleWrapper(torch.nn.Linear(3, 2))
        >>> layer(torch.ones(4, 3)).shape
        torch.Size([4, 2])
        >>> [tuple(w.shape) for w in layer.trainable_weights]
        [(2, 3), (2,)]
    """

    def __init__(
        self,
        module: nn.Module,
        name: str | None = None,
        output_shape: Sequence[int | None] | None = None,
        **kwargs: Any,
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"TorchModuleWrapper needs a torch.nn.Module, got {type(module).__name__}.")
        if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
            raise ValueError(
                f"TorchModuleWrapper: the lazy module {type(module).__name__} has uninitialised "
                "parameters; run it once on a sample input before wrapping it."
            )
        super().__init__(name=name, **kwargs)
        self.module = module.to(config.get_device())
        if not self.trainable:
            for p in self.module.parameters():
                p.requires_grad_(False)
        self._output_shape = None if output_shape is None else tuple(output_shape)
        self.built = True

    def call(self, *args: Any, training: bool = False, **kwargs: Any) -> Any:
        if self.module.training != bool(training):
            self.module.train(bool(training))
        return self.module(*args, **kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        if self._output_shape is not None:
            return self._output_shape
        return super().compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(
            f"TorchModuleWrapper {self.name!r} (wrapping {type(self.module).__name__}) cannot be saved by "
            "config: a torch module can only be rebuilt by running its code. Save the weights with "
            "model.save_weights(path), rebuild the model in code and call load_weights(path)."
        )
