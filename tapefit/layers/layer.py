"""``Layer``: the Keras layer contract on a ``torch.nn.Module``.

Owns: ``add_weight`` with Keras-layout shapes and initialisers, ``trainable`` freezing, weight
lists and ``get_weights``/``set_weights`` in Keras layout, regularisation losses, naming and
config. How a layer is called (building on first use, the ``training`` flag passed down through
nested calls, dtype policies) lives in ``_calling``; symbolic (functional-API) calls in ``symbolic``.

Weights are stored in PyTorch's layout (a conv kernel as (out, in, kh, kw)) so that torch kernels
use them without copies; ``add_weight(..., storage_perm=...)`` records the permutation from the
Keras shape so that ``get_weights`` and initialisers see Keras's layout.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import config, constraints, initializers, regularizers
from .._naming import to_snake_case, unique_name
from ..jit import _tracing
from ..mixed_precision import policy as mp_policy
from ..mixed_precision.policy import DTypePolicy
from ._calling import _LEAN_KEYS, CallMixin

__all__ = ["Layer"]


# Bumped whenever any layer gains a weight, a sub-module or its first activity loss, so that
# per-layer caches of weight and loss lists stay valid without walking the module tree per step.
_structure_version = [0]


def _structure_changed() -> None:
    _structure_version[0] += 1


def _structure_cached(owner: Any, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, cached on ``owner`` until any layer's structure changes.

    Under torch.compile it is computed afresh: a compiled step then guards on the model's own
    modules instead of on the global counter, which building any other model would bump (and
    so recompile every compiled step in the process).
    """
    if _tracing():
        return compute()
    cached = owner.__dict__.get(key)
    if cached is None or cached[0] != _structure_version[0]:
        cached = owner.__dict__[key] = (_structure_version[0], compute())
    return cached[1]


class Layer(CallMixin, nn.Module):
    """Base class of every tapefit layer and model.

    Subclasses create weights in ``build(input_shape)`` with ``add_weight`` and compute in
    ``call(inputs, training=None)``. Calling a layer builds it on first use.

    Example:
        >>> import torch, tapefit
        >>> class Scale(tapefit.layers.Layer):
        ...     def build(self, input_shape):
        ...         self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")
        ...     def call(self, x):
        ...         return x * self.w
        >>> Scale()(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """

    # True for layers whose output has their input's shape (activations, normalisation, dropout):
    # the functional API then infers shapes without running the layer.
    _preserves_shape = False

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype: Any = None,
        input_shape: Sequence[int | None] | None = None,
        input_dim: int | None = None,
        batch_input_shape: Sequence[int | None] | None = None,
        batch_size: int | None = None,
        autocast: bool = True,
        **kwargs: Any,
    ):
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s) {sorted(kwargs)}")
        super().__init__()
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.built = False
        if dtype is not None and not isinstance(dtype, (str, DTypePolicy)):
            dtype = str(dtype).replace("torch.", "")
        # Keras: a layer takes the global policy in force when it is created, unless given one.
        self._policy = DTypePolicy(dtype) if dtype is not None else mp_policy.global_policy()
        self._dtype_name = self._policy.name if dtype is not None else None
        self.autocast = autocast
        self._weight_names: list[str] = []
        self._storage_perms: dict[str, tuple[int, ...]] = {}
        self._intrinsic_trainable: dict[str, bool] = {}
        self._weight_regularizers: list[tuple[str, Any]] = []
        self._call_losses: list[torch.Tensor] = []
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        if batch_input_shape is not None:
            self._batch_input_shape: tuple | None = tuple(batch_input_shape)
        elif input_shape is not None:
            self._batch_input_shape = (batch_size, *tuple(input_shape))
        else:
            self._batch_input_shape = None

    # ----------------------------------------------------------------- weights
    def add_weight(
        self,
        shape: Sequence[int] | None = None,
        initializer: Any = None,
        dtype: Any = None,
        trainable: bool = True,
        regularizer: Any = None,
        constraint: Any = None,
        name: str | None = None,
        storage_perm: Sequence[int] | None = None,
    ) -> nn.Parameter:
        """Create a weight of Keras-layout ``shape`` and register it on this module.

        ``storage_perm`` permutes the Keras-layout tensor into the layout torch kernels want;
        ``get_weights`` undoes it. The default initialiser is glorot_uniform for floats. A
        ``constraint`` (see ``tapefit.constraints``) is attached as ``param.constraint`` and applied
        by the optimizer after each update, to the weight in Keras's layout.
        """
        shape = tuple(int(s) for s in (shape or ()))
        constraint = constraints.get(constraint)
        if dtype is None:
            dtype = getattr(
                torch,
                self._policy.variable_dtype if self._policy.name != "float32" else config.floatx(),
            )
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if initializer is None:
            initializer = "glorot_uniform" if dtype.is_floating_point else "zeros"
        value = initializers.get(initializer)(shape, dtype=dtype, device=self._weight_device())
        if storage_perm is not None:
            value = value.permute(*storage_perm).contiguous()
            self._storage_perms[name or ""] = tuple(storage_perm)
        base = name or "weight"
        if self.__dict__.get(base, 0) is None:
            del self.__dict__[base]  # ``self.kernel = None`` in __init__, then the weight in build()
        elif base in self.__dict__:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: add_weight(name={base!r}) clashes with the plain "
                f"attribute self.{base}; rename the weight or the attribute."
            )
        attr = base
        i = 1
        while attr in self._parameters or attr in self._buffers or attr in self._modules:
            attr = f"{base}_{i}"
            i += 1
        if storage_perm is not None:
            self._storage_perms[attr] = self._storage_perms.pop(name or "")
        param = nn.Parameter(
            value, requires_grad=bool(trainable) and self.trainable and dtype.is_floating_point
        )
        param.path = f"{self.name}/{attr}"  # optimizers match exclude_from_weight_decay(var_names=) on it
        self.register_parameter(attr, param)
        _structure_changed()
        self._weight_names.append(attr)
        self._intrinsic_trainable[attr] = bool(trainable)
        reg = regularizers.get(regularizer)
        if reg is not None:
            self._weight_regularizers.append((attr, reg))
        if constraint is not None:
            perm = self._storage_perms.get(attr)
            # The optimizer applies ``param.constraint`` after each update (Keras keeps it on the
            # variable); ``axis`` refers to Keras's layout, so permuted storage is viewed back first.
            param.constraint = constraint if perm is None else constraints._InStorageLayout(constraint, perm)
        return param

    add_variable = add_weight

    def _weight_device(self) -> torch.device:
        first = _structure_cached(self, "_first_param", lambda: next(self.parameters(), None))
        return first.device if first is not None else config.get_device()

    def __deepcopy__(self, memo: dict) -> Layer:
        """A deep copy that keeps what tapefit stores on its weights (``path``, ``constraint``),
        which ``Parameter.__deepcopy__`` drops."""
        for param in self.parameters():
            if param.__dict__:  # also when copied earlier in this deepcopy (e.g. via an optimizer)
                twin = copy.deepcopy(param, memo)
                for key, value in param.__dict__.items():
                    if key not in twin.__dict__:
                        twin.__dict__[key] = copy.deepcopy(value, memo)
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            clone.__dict__[key] = copy.deepcopy(value, memo)
        return clone

    def _own_weights(self) -> list[torch.Tensor]:
        return [getattr(self, n) for n in self._weight_names]

    @property
    def weights(self) -> list[torch.Tensor]:
        """Own weights in creation order, then each sub-layer's, without duplicates (shared layers)."""
        return list(_structure_cached(self, "_weights_cache", self._unique_weights))

    def _unique_weights(self) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        seen: set[int] = set()
        for w in self._iter_weights():
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        return out

    def _iter_weights(self):
        yield from self._own_weights()
        for child in self._sublayers():
            if isinstance(child, Layer):
                yield from child._iter_weights()
            else:
                yield from child.parameters()
                yield from (b for b in child.buffers() if b.is_floating_point())

    def _sublayers(self) -> list[nn.Module]:
        """Direct children, with ModuleList/ModuleDict containers (lists of layers) flattened."""
        out: list[nn.Module] = []
        stack = list(self._modules.values())[::-1]
        while stack:
            m = stack.pop()
            if m is None:
                continue
            if isinstance(m, (nn.ModuleList, nn.ModuleDict)):
                stack.extend(list(m._modules.values())[::-1])
            else:
                out.append(m)
        return out

    variables = weights

    @property
    def trainable_weights(self) -> list[torch.Tensor]:
        return [w for w in self.weights if w.requires_grad]

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self) -> list[torch.Tensor]:
        return [w for w in self.weights if not w.requires_grad]

    non_trainable_variables = non_trainable_weights

    def _keras_layout(self) -> list[tuple[Layer | None, str, torch.Tensor]]:
        out, seen = [], set()
        for owner, attr, w in self._iter_named_weights():
            if id(w) not in seen:
                seen.add(id(w))
                out.append((owner, attr, w))
        return out

    def _iter_named_weights(self):
        for n in self._weight_names:
            yield self, n, getattr(self, n)
        for child in self._sublayers():
            if isinstance(child, Layer):
                yield from child._iter_named_weights()
            else:
                for n, p in child.named_parameters():
                    yield None, n, p
                for n, b in child.named_buffers():
                    if b.is_floating_point():
                        yield None, n, b

    def get_weights(self) -> list[np.ndarray]:
        """Weights as numpy arrays in Keras layout (Dense kernel (in, out), Conv2D (kh, kw, in, out)).

        bfloat16 weights, which numpy cannot hold, come back as float32 arrays of the same values.
        """
        out = []
        for owner, attr, w in self._keras_layout():
            t = w.detach()
            if t.dtype == torch.bfloat16:
                t = t.float()
            perm = owner._storage_perms.get(attr) if owner is not None else None
            if perm is not None:
                t = t.permute(*np.argsort(perm).tolist())
            out.append(t.cpu().numpy().copy())
        return out

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set weights from arrays in Keras layout; checks count and every shape before changing any."""
        targets = self._keras_layout()
        if len(weights) != len(targets):
            raise ValueError(
                f"Layer {self.name!r} expects {len(targets)} weights, but set_weights received "
                f"{len(weights)}."
            )
        staged = []
        for (owner, attr, w), value in zip(targets, weights):
            t = torch.as_tensor(np.asarray(value))
            perm = owner._storage_perms.get(attr) if owner is not None else None
            keras_shape = tuple(w.permute(*np.argsort(perm).tolist()).shape) if perm else tuple(w.shape)
            if tuple(t.shape) != keras_shape:
                where = owner.name if owner is not None else self.name
                raise ValueError(
                    f"Layer {where!r} weight {attr!r} has shape {keras_shape}, but set_weights "
                    f"received an array of shape {tuple(t.shape)}."
                )
            staged.append((w, t.permute(*perm) if perm else t))
        with torch.no_grad():
            for w, t in staged:
                w.copy_(t.to(dtype=w.dtype, device=w.device))

    def count_params(self) -> int:
        if not self.built and not self.weights:
            raise ValueError(
                f"Layer {self.name!r} is not built yet, so it has no weights to count: call it "
                "on data or call build(input_shape) first."
            )
        return int(sum(w.numel() for w in self.weights))

    # -------------------------------------------------------------- trainable
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """Freeze or unfreeze this layer and every layer inside it (Keras 3 semantics)."""
        for m in self.modules():
            if isinstance(m, Layer):
                m._trainable = bool(value)
                for attr in m._weight_names:
                    w = getattr(m, attr)
                    w.requires_grad_(bool(value) and m._intrinsic_trainable[attr] and w.is_floating_point())
            else:
                for p in m.parameters(recurse=False):
                    p.requires_grad_(bool(value))

    # ----------------------------------------------------------------- masking
    @property
    def supports_masking(self) -> bool:
        """Whether a mask on this layer's input is carried to its outputs (by :meth:`compute_mask`).

        Keras's rule: True for layers that keep timesteps in place (activations, ``Dense``,
        dropout, normalisation), and by default for any layer that overrides ``compute_mask``.
        Set it to True in a custom layer's ``__init__`` to pass masks through unchanged.
        """
        value = self.__dict__.get("_supports_masking")
        if value is None:
            value = type(self)._masks_by_default
            if value is None:
                value = type(self).compute_mask is not Layer.compute_mask
        return value

    @supports_masking.setter
    def supports_masking(self, value: bool) -> None:
        self.__dict__["_supports_masking"] = bool(value)

    # The class's default for ``supports_masking`` (None: whether it overrides ``compute_mask``).
    _masks_by_default: bool | None = None

    def compute_mask(self, inputs: Any, previous_mask: Any) -> Any:
        """The mask of this layer's output for ``inputs`` whose mask is ``previous_mask``.

        The default passes the input's mask on unchanged (used when ``supports_masking``).
        """
        return previous_mask

    # ------------------------------------------------------------------ losses
    def add_loss(self, loss: torch.Tensor) -> None:
        """Add an activity loss during ``call``; it is collected in ``losses`` until the next call."""
        if not self.__dict__.get("_adds_losses"):
            self.__dict__["_adds_losses"] = True
            _structure_changed()
        self._call_losses.append(loss)

    def _loss_layers(self) -> list[Layer]:
        """The layers inside this one that have regularisers or have added activity losses."""
        return _structure_cached(
            self,
            "_loss_layers_cache",
            lambda: [
                m
                for m in self.modules()
                if isinstance(m, Layer) and (m._weight_regularizers or m.__dict__.get("_adds_losses"))
            ],
        )

    @property
    def losses(self) -> list[torch.Tensor]:
        """Losses added during the last call plus the weights' regularisation penalties."""
        out: list[torch.Tensor] = []
        for m in self._loss_layers():
            out.extend(m._call_losses)
            out.extend(reg(getattr(m, attr)) for attr, reg in m._weight_regularizers)
        return out

    def _clear_losses(self) -> None:
        for m in self._loss_layers():
            if m._call_losses:
                m._call_losses = []

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        config_: dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        if self._dtype_name is not None:
            config_["dtype"] = self._dtype_name
        if self._batch_input_shape is not None:
            config_["batch_input_shape"] = list(self._batch_input_shape)
        return config_

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    @property
    def dtype(self) -> str:
        """The dtype of the weights (Keras's ``layer.dtype``: the policy's variable dtype)."""
        return self._policy.variable_dtype if self._policy.name != "float32" else config.floatx()

    @property
    def compute_dtype(self) -> str:
        return self._policy.compute_dtype

    @property
    def dtype_policy(self) -> DTypePolicy:
        return self._policy

    @property
    def input_shape(self) -> Any:
        if self._batch_input_shape is not None:
            return self._batch_input_shape
        raise AttributeError(
            f"Layer {self.name!r} has no defined input shape: it was not called on a "
            "symbolic input and no input_shape= was given."
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            isinstance(value, (list, tuple))
            and value
            and not name.startswith("_")
            and all(isinstance(v, nn.Module) for v in value)
        ):
            value = nn.ModuleList(value)
        elif (
            isinstance(value, dict)
            and value
            and not name.startswith("_")
            and all(isinstance(v, nn.Module) for v in value.values())
            and all(isinstance(k, str) for k in value)
        ):
            value = nn.ModuleDict(value)
        if isinstance(value, nn.Module):
            _structure_changed()
        if name in _LEAN_KEYS:
            self.__dict__.pop("_lean_call", None)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        _structure_changed()
        super().__delattr__(name)
