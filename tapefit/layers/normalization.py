"""Normalization layers with Keras's numbers: ``BatchNormalization`` (moving statistics updated as
Keras does), ``LayerNormalization`` and ``GroupNormalization``, on torch's fused kernels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .. import config, constraints, initializers, regularizers
from .layer import Layer

__all__ = ["BatchNormalization", "GroupNormalization", "LayerNormalization"]


def _positive_axis(axis: int, ndim: int, layer: Layer, shape: Any) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r}: axis {axis} is out of bounds for input "
            f"shape {tuple(shape)}."
        )
    return axis % ndim


def _scale_and_center(layer: Layer, shape: Sequence[int], scale: bool, center: bool) -> None:
    """Create ``layer.gamma`` and ``layer.beta`` (``None`` when not used) with the layer's
    initializers, regularizers and constraints."""
    layer.gamma = (
        layer.add_weight(
            tuple(shape),
            layer.gamma_initializer,
            name="gamma",
            regularizer=layer.gamma_regularizer,
            constraint=layer.gamma_constraint,
        )
        if scale
        else None
    )
    layer.beta = (
        layer.add_weight(
            tuple(shape),
            layer.beta_initializer,
            name="beta",
            regularizer=layer.beta_regularizer,
            constraint=layer.beta_constraint,
        )
        if center
        else None
    )


class BatchNormalization(Layer):
    """Normalizes each feature (``axis``) with batch statistics in training and moving ones in inference.

    In training mode (``training=True`` and the layer trainable) the output is
    ``gamma * (x - mean) / sqrt(var + epsilon) + beta`` over the batch, and the moving statistics
    become ``moving * momentum + batch * (1 - momentum)`` with the biased batch variance, exactly as
    Keras 3. Otherwise the moving statistics are used. As in Keras 3, ``trainable=False`` makes the
    layer run in inference mode even when called with ``training=True``.

    Weights (Keras order): gamma, beta (trainable), moving_mean, moving_variance (non-trainable).

    Example:
        >>> import torch, tapefit
        >>> bn = tapefit.layers.BatchNormalization()
        >>> y = bn(torch.randn(8, 3), training=True)
        >>> [w.shape for w in bn.get_weights()]
        [(3,), (3,), (3,), (3,)]
    """

    _preserves_shape = True

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        renorm: bool = False,
        renorm_clipping: Any = None,
        renorm_momentum: float = 0.99,
        synchronized: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) or isinstance(axis, bool):
            raise ValueError(f"BatchNormalization: axis must be a single int, got {axis!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1], got {momentum}")
        if epsilon <= 0:
            raise ValueError(f"BatchNormalization: epsilon must be positive, got {epsilon}")
        if renorm:
            raise NotImplementedError("BatchNormalization(renorm=True) is not supported yet.")
        if synchronized:
            raise ValueError(
                "BatchNormalization(synchronized=True) is not supported: statistics are "
                "computed per device. Use synchronized=False."
            )
        self.axis = int(axis)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.synchronized = False
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)

    def build(self, input_shape: Any) -> None:
        axis = _positive_axis(self.axis, len(input_shape), self, input_shape)
        dim = input_shape[axis]
        if dim is None:
            raise ValueError(
                f"BatchNormalization {self.name!r}: axis {self.axis} of the input must have a "
                f"known size, got shape {tuple(input_shape)}."
            )
        _scale_and_center(self, (dim,), self.scale, self.center)
        self.moving_mean = self.add_weight(
            (dim,), self.moving_mean_initializer, name="moving_mean", trainable=False
        )
        self.moving_variance = self.add_weight(
            (dim,), self.moving_variance_initializer, name="moving_variance", trainable=False
        )
        self._ndim = len(input_shape)
        self.built = True

    _masks_by_default = True

    def call(
        self, inputs: torch.Tensor, training: bool = False, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        ndim = inputs.dim()
        if ndim != self._ndim:
            raise ValueError(
                f"BatchNormalization {self.name!r} was built for inputs of rank {self._ndim}, "
                f"but got an input of shape {tuple(inputs.shape)}."
            )
        axis = self.axis % ndim
        if mask is not None:
            if mask.dim() != ndim - 1:
                raise ValueError(
                    f"BatchNormalization {self.name!r}: the mask must have one dimension less than the "
                    f"inputs (a mask per timestep); got mask.shape={tuple(mask.shape)}, "
                    f"inputs.shape={tuple(inputs.shape)}."
                )
            if training and self.trainable:
                return self._masked_train_forward(inputs, mask, axis)
        # torch's kernels want the features on dim 1. Channels-last data is viewed, never copied:
        # (..., C) contiguous becomes (M, C), other layouts are permuted views.
        flat = axis == ndim - 1 and inputs.is_contiguous()
        x = inputs.reshape(-1, inputs.shape[-1]) if flat else inputs.movedim(axis, 1)
        if training and self.trainable:
            y = self._train_forward(x)
        else:
            y = F.batch_norm(
                x, self.moving_mean, self.moving_variance, self.gamma, self.beta, False, 0.0, self.epsilon
            )
        return y.view(inputs.shape) if flat else y.movedim(1, axis)

    def _train_forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.numel() // x.shape[1]
        if n < 2:
            raise ValueError(
                f"BatchNormalization {self.name!r}: training needs more than one value per "
                f"feature to compute a variance, got an input with {n}."
            )
        # torch updates running_var with the unbiased variance (factor n / (n - 1)); Keras uses the
        # biased one. Feeding the kernel moving_variance * n/(n-1) and dividing its update by the same
        # factor gives Keras's moving * m + var_biased * (1 - m) without another pass over the data.
        # The kernel gets a scratch copy because it saves running_var for backward (no in-place edits).
        correction = n / (n - 1)
        with torch.no_grad():
            running_var = self.moving_variance * correction
        y = F.batch_norm(
            x, self.moving_mean, running_var, self.gamma, self.beta, True, 1.0 - self.momentum, self.epsilon
        )
        with torch.no_grad():
            torch.div(running_var, correction, out=self.moving_variance)
        return y

    def _masked_train_forward(self, inputs: torch.Tensor, mask: torch.Tensor, axis: int) -> torch.Tensor:
        """Training with statistics over the unmasked timesteps only, as Keras computes them."""
        x = inputs.float() if inputs.dtype in (torch.float16, torch.bfloat16) else inputs
        keep = mask.unsqueeze(-1).expand(x.shape).bool()
        dims = [d for d in range(x.dim()) if d != axis]
        count = keep.sum(dims, keepdim=True, dtype=x.dtype) + config.epsilon()  # as Keras's backend epsilon
        mean = torch.where(keep, x, 0.0).sum(dims, keepdim=True) / count
        variance = torch.where(keep, x - mean, 0.0).square().sum(dims, keepdim=True) / count
        with torch.no_grad():
            m = self.momentum
            self.moving_mean.mul_(m).add_(mean.reshape(-1).to(self.moving_mean.dtype), alpha=1.0 - m)
            self.moving_variance.mul_(m).add_(
                variance.reshape(-1).to(self.moving_variance.dtype), alpha=1.0 - m
            )
        shape = [1] * x.dim()
        shape[axis] = x.shape[axis]
        y = (x - mean) * torch.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma.reshape(shape).to(y.dtype)
        if self.beta is not None:
            y = y + self.beta.reshape(shape).to(y.dtype)
        return y.to(inputs.dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
            "synchronized": self.synchronized,
        }


class LayerNormalization(Layer):
    """Normalizes each sample over ``axis`` (int or list): ``gamma * (x - mean) / sqrt(var + eps) + beta``.

    ``rms_scaling=True`` reproduces Keras's (deprecated) option: ``x * rsqrt(var + eps) * gamma``
    with no centering and no beta.

    Example:
        >>> import torch, tapefit
        >>> y = tapefit.layers.LayerNormalization()(torch.tensor([[1.0, 2.0, 3.0]]))
        >>> [round(v, 3) for v in y[0].tolist()]
        [-1.224, 0.0, 1.224]
    """

    _preserves_shape = True

    _masks_by_default = True

    def __init__(
        self,
        axis: int | Sequence[int] = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        rms_scaling: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            if not axis or not all(isinstance(a, int) for a in axis):
                raise TypeError(f"LayerNormalization: axis must be an int or a list of ints, got {axis!r}")
            axis = list(axis)
        elif not isinstance(axis, int) or isinstance(axis, bool):
            raise TypeError(f"LayerNormalization: axis must be an int or a list of ints, got {axis!r}")
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center, self.scale, self.rms_scaling = bool(center), bool(scale), bool(rms_scaling)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)

    def build(self, input_shape: Any) -> None:
        ndim = len(input_shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        self._axes = sorted({_positive_axis(a, ndim, self, input_shape) for a in axes})
        shape = tuple(input_shape[a] for a in self._axes)
        if None in shape:
            raise ValueError(
                f"LayerNormalization {self.name!r}: the normalized axes {self.axis} must have "
                f"known sizes, got input shape {tuple(input_shape)}."
            )
        self._trailing = self._axes == list(range(ndim - len(shape), ndim))
        self._broadcast = [input_shape[d] if d in self._axes else 1 for d in range(ndim)]
        use_gamma, use_beta = self.scale or self.rms_scaling, self.center and not self.rms_scaling
        _scale_and_center(self, shape, use_gamma, use_beta)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.rms_scaling and self._trailing:
            return F.layer_norm(
                inputs, tuple(inputs.shape[a] for a in self._axes), self.gamma, self.beta, self.epsilon
            )
        var, mean = torch.var_mean(inputs, dim=self._axes, correction=0, keepdim=True)
        inv = torch.rsqrt(var + self.epsilon)
        gamma = None if self.gamma is None else self.gamma.reshape(self._broadcast)
        if self.rms_scaling:
            return inputs * inv if gamma is None else inputs * inv * gamma
        if gamma is not None:
            inv = inv * gamma
        shift = -mean * inv
        if self.beta is not None:
            shift = shift + self.beta.reshape(self._broadcast)
        return inputs * inv + shift

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "rms_scaling": self.rms_scaling,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }


class GroupNormalization(Layer):
    """Normalizes each sample over groups of channels (``axis``, channels-last by default).

    ``groups=-1`` gives instance normalization (one channel per group); ``groups=1`` normalizes
    over all channels and positions together.
    """

    _preserves_shape = True

    _masks_by_default = True

    def __init__(
        self,
        groups: int = 32,
        axis: int = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        **kwargs: Any,
    ):
        if not isinstance(groups, int) or isinstance(groups, bool) or (groups <= 0 and groups != -1):
            raise ValueError(
                "GroupNormalization: groups must be a positive integer (or -1 for instance "
                f"normalization), got {groups!r}"
            )
        super().__init__(**kwargs)
        self.groups, self.axis, self.epsilon = groups, int(axis), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)

    def build(self, input_shape: Any) -> None:
        axis = _positive_axis(self.axis, len(input_shape), self, input_shape)
        dim = input_shape[axis]
        if dim is None:
            raise ValueError(
                f"GroupNormalization {self.name!r}: axis {self.axis} of the input must have a "
                f"known size, got shape {tuple(input_shape)}."
            )
        groups = dim if self.groups == -1 else self.groups
        if dim < groups or dim % groups:
            raise ValueError(
                f"GroupNormalization {self.name!r}: the {dim} channels cannot be split into "
                f"{groups} equal groups; choose groups that divide {dim}."
            )
        self._groups = groups
        _scale_and_center(self, (dim,), self.scale, self.center)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        axis = self.axis % inputs.dim()
        x = inputs.movedim(axis, 1)
        return F.group_norm(x, self._groups, self.gamma, self.beta, self.epsilon).movedim(1, axis)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "groups": self.groups,
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
