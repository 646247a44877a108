"""``Layer``: the Keras layer contract on a ``torch.nn.Module``.

Owns: lazy building from the first input's shape, ``add_weight`` with Keras-layout shapes and
initialisers, the ``training`` flag passed down through nested calls, ``trainable`` freezing,
weight lists and ``get_weights``/``set_weights`` in Keras layout, regularisation losses,
naming and config. Symbolic (functional-API) calls are delegated to ``symbolic``.

Weights are stored in PyTorch's layout (a conv kernel as (out, in, kh, kw)) so that torch kernels
use them without copies; ``add_weight(..., storage_perm=...)`` records the permutation from the
Keras shape so that ``get_weights`` and initialisers see Keras's layout.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as _torch_module

from .. import config, initializers, regularizers
from .._naming import to_snake_case, unique_name
from ..mixed_precision import policy as mp_policy
from ..mixed_precision.policy import DTypePolicy

__all__ = ["Layer"]


def _symbolic() -> Any:
    """The functional-API module (imported late: it builds on this one)."""
    from . import symbolic

    return symbolic


# Bumped whenever any layer gains a weight, a sub-module or its first activity loss, so that
# per-layer caches of weight and loss lists stay valid without walking the module tree per step.
_structure_version = [0]


def _structure_changed() -> None:
    _structure_version[0] += 1


# The training flag of the innermost enclosing layer call (None outside any call), so that
# nested layers called without ``training=`` inherit it, as in Keras.
_call_context: list[Any] = [None, 0, None, False]  # [training, depth, dtype policy, policy is mixed]

# Attributes whose change can make a layer need the full call path again (see ``Layer.__call__``).
_LEAN_KEYS = frozenset({"built", "autocast", "_policy", "_compiled_call_impl", "forward", "call"})


def _hookless(module: nn.Module) -> bool:
    """Whether ``nn.Module.__call__`` would go straight to ``forward`` (no hooks, no jit tracing)."""
    return not (
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
        or _torch_module._global_forward_hooks
        or _torch_module._global_forward_pre_hooks
        or _torch_module._global_backward_hooks
        or _torch_module._global_backward_pre_hooks
        or torch._C._get_tracing_state()
    )


def current_training() -> bool | None:
    return _call_context[0]


def _to_tensor(x: Any, device: torch.device | None) -> Any:
    if isinstance(x, torch.Tensor):
        return x if device is None or x.device == device else x.to(device, non_blocking=True)
    if isinstance(x, np.ndarray) or (isinstance(x, (float, int)) and not isinstance(x, bool)):
        arr = np.asarray(x)
        if arr.dtype.kind in "OSU":
            raise TypeError(
                f"Cannot feed an array of dtype {arr.dtype} to a model: convert it to numbers first."
            )
        t = torch.from_numpy(arr) if arr.ndim else torch.tensor(arr)
        if t.is_floating_point() and t.dtype != getattr(torch, config.floatx()):
            t = t.to(getattr(torch, config.floatx()))
        return t.to(device) if device is not None else t
    if isinstance(x, (list, tuple)):
        return type(x)(_to_tensor(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to_tensor(v, device) for k, v in x.items()}
    return x


def _cast_floating(args: tuple, dtype: torch.dtype) -> tuple:
    """``args`` with floating tensors (also inside lists/tuples) cast to ``dtype``, as Keras's
    autocasting layers do: a float32 layer after a bfloat16 one computes in float32."""
    for a in args:
        if type(a) is torch.Tensor or isinstance(a, torch.Tensor):
            if a.dtype is not dtype and a.is_floating_point():
                break
        elif isinstance(a, (list, tuple)):
            break
    else:
        return args

    def cast(a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return a.to(dtype) if a.is_floating_point() and a.dtype is not dtype else a
        if isinstance(a, (list, tuple)):
            return type(a)(cast(v) for v in a)
        return a

    return tuple(cast(a) for a in args)


def _describe_inputs(args: tuple) -> str:
    parts = []
    for a in args:
        if isinstance(a, torch.Tensor):
            parts.append(f"{tuple(a.shape)} {str(a.dtype).removeprefix('torch.')} on {a.device}")
        elif isinstance(a, (list, tuple, dict)):
            parts.append(f"a {type(a).__name__} of {len(a)}")
    return ", ".join(parts) or "no tensors"


def _with_context(error: RuntimeError, outer: Any, args: tuple) -> RuntimeError:
    """torch's error re-raised with the layer that failed and what the model was given.

    Only plain ``RuntimeError`` (what torch's kernels raise): subclasses such as
    ``NotImplementedError`` and ``torch.OutOfMemoryError`` keep their type for callers to catch.

    The failing layer is the innermost tapefit layer in the traceback: found only when an error
    happens, so calls pay nothing for it.
    """
    failing = outer
    tb = error.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, Layer):
            failing = candidate
        tb = tb.tb_next
    where = f"{type(failing).__name__} {failing.name!r}"
    if failing is not outer:
        where += f" (inside {type(outer).__name__} {outer.name!r})"
    wrapped = RuntimeError(
        f"{where} failed on inputs {_describe_inputs(args)}: {error}\n(torch's original error is the cause "
        "above; check the input shapes and dtypes against the layer's, or the layer's own code.)"
    )
    wrapped._tapefit_context = True  # type: ignore[attr-defined]
    return wrapped


def _shape_of(x: Any) -> Any:
    if isinstance(x, torch.Tensor) or hasattr(x, "shape"):
        return tuple(x.shape)
    if isinstance(x, (list, tuple)):
        return [_shape_of(v) for v in x]
    if isinstance(x, dict):
        return {k: _shape_of(v) for k, v in x.items()}
    return None


class Layer(nn.Module):
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

    _accepts_training: bool | None = None
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
        ``get_weights`` undoes it. The default initialiser is glorot_uniform for floats.
        """
        shape = tuple(int(s) for s in (shape or ()))
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
            raise NotImplementedError("add_weight(constraint=...) is not supported yet.")
        return param

    add_variable = add_weight

    def _weight_device(self) -> torch.device:
        cached = self.__dict__.get("_first_param")
        if cached is not None and cached[0] == _structure_version[0]:
            return cached[1].device if cached[1] is not None else config.get_device()
        first = next(self.parameters(), None)
        self.__dict__["_first_param"] = (_structure_version[0], first)
        return first.device if first is not None else config.get_device()

    def _own_weights(self) -> list[torch.Tensor]:
        return [getattr(self, n) for n in self._weight_names]

    @property
    def weights(self) -> list[torch.Tensor]:
        """Own weights in creation order, then each sub-layer's, without duplicates (shared layers)."""
        cached = self.__dict__.get("_weights_cache")
        if cached is not None and cached[0] == _structure_version[0]:
            return list(cached[1])
        out: list[torch.Tensor] = []
        seen: set[int] = set()
        for w in self._iter_weights():
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        self.__dict__["_weights_cache"] = (_structure_version[0], out)
        return list(out)

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
        """Weights as numpy arrays in Keras layout (Dense kernel (in, out), Conv2D (kh, kw, in, out))."""
        out = []
        for owner, attr, w in self._keras_layout():
            t = w.detach()
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

    # ------------------------------------------------------------------ losses
    def add_loss(self, loss: torch.Tensor) -> None:
        """Add an activity loss during ``call``; it is collected in ``losses`` until the next call."""
        if not self.__dict__.get("_adds_losses"):
            self.__dict__["_adds_losses"] = True
            _structure_changed()
        self._call_losses.append(loss)

    def _loss_layers(self) -> list[Layer]:
        """The layers inside this one that have regularisers or have added activity losses."""
        cached = self.__dict__.get("_loss_layers_cache")
        if cached is not None and cached[0] == _structure_version[0]:
            return cached[1]
        found = [
            m
            for m in self.modules()
            if isinstance(m, Layer) and (m._weight_regularizers or m.__dict__.get("_adds_losses"))
        ]
        self.__dict__["_loss_layers_cache"] = (_structure_version[0], found)
        return found

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

    # ----------------------------------------------------------------- calling
    def build(self, input_shape: Any = None) -> None:
        """Create the weights for inputs of ``input_shape`` (batch dimension first)."""
        self.built = True

    def call(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"Layer {type(self).__name__} must implement call().")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(*args, **kwargs)

    @classmethod
    def _call_has_training(cls) -> bool:
        if cls.__dict__.get("_accepts_training") is None:
            fn = cls.call if cls.forward is Layer.forward else cls.forward
            params = inspect.signature(fn).parameters
            cls._accepts_training = "training" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
            )
        return cls.__dict__["_accepts_training"]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        one_tensor = len(args) == 1 and type(args[0]) is torch.Tensor
        if not one_tensor and _symbolic().any_symbolic(args, kwargs):
            return _symbolic().symbolic_call(self, args, kwargs)
        training = kwargs.pop("training", None) if kwargs else None
        ctx = _call_context
        lean = self.__dict__.get("_lean_call")
        if lean is not None and not ctx[3] and _hookless(self):
            # A built layer with nothing that needs the full path (hooks, a mixed-precision policy,
            # torch.jit tracing): only the training flag to pass and, outermost, the inputs' device.
            forward_is_call, accepts_training, policy, cast_to = lean
            target = self.call if forward_is_call else self.forward
            if cast_to is not None and not (one_tensor and args[0].dtype is cast_to):
                args = _cast_floating(args, cast_to)
            if not ctx[1]:
                return self._lean_outer_call(target, accepts_training, policy, training, args, kwargs)
            if training is None or training is ctx[0]:
                if accepts_training:
                    kwargs["training"] = bool(ctx[0])
                return target(*args, **kwargs)
            if accepts_training:
                kwargs["training"] = bool(training)
            saved = ctx[0]
            ctx[0] = training
            try:
                return target(*args, **kwargs)
            finally:
                ctx[0] = saved
        outer = ctx[1] == 0
        if training is None:
            training = ctx[0]
        if outer:
            device = self._weight_device() if self.built or self._parameters or self._modules else None
            if not (len(args) == 1 and type(args[0]) is torch.Tensor and args[0].device == device):
                args = _to_tensor(args, device)
            self._clear_losses()
        if not self.built:
            self._build_from_call(args, kwargs)
        if self._call_has_training():
            kwargs["training"] = bool(training)
        saved = ctx[0], ctx[1], ctx[2], ctx[3]
        policy = self._policy if self.autocast else saved[2]
        switch = policy is not saved[2] and (policy.is_mixed or saved[3])
        ctx[0], ctx[1], ctx[2] = training, saved[1] + 1, policy
        ctx[3] = policy is not None and policy.is_mixed
        if self.autocast and not self._policy.is_mixed:
            args = _cast_floating(args, getattr(torch, self._policy.compute_dtype))
        try:
            if switch:
                return self._call_with_policy(policy, outer, args, kwargs)
            if lean is None:
                self._make_lean()
            if _hookless(self) and self._compiled_call_impl is None:
                return self.forward(*args, **kwargs)
            return nn.Module.__call__(self, *args, **kwargs)
        except RuntimeError as error:
            if outer and type(error) is RuntimeError and not hasattr(error, "_tapefit_context"):
                raise _with_context(error, self, args) from error
            raise
        finally:
            ctx[0], ctx[1], ctx[2], ctx[3] = saved

    def _lean_outer_call(
        self,
        target: Any,
        accepts_training: bool,
        policy: DTypePolicy | None,
        training: Any,
        args: tuple,
        kwargs: dict,
    ) -> Any:
        """The outermost call on the lean path: inputs to the weights' device, last call's losses cleared."""
        device = self._weight_device()
        if not (len(args) == 1 and type(args[0]) is torch.Tensor and args[0].device == device):
            args = _to_tensor(args, device)
        self._clear_losses()
        if accepts_training:
            kwargs["training"] = bool(training)
        ctx = _call_context
        saved = ctx[0], ctx[2]
        ctx[0], ctx[1] = training, 1
        if policy is not None:
            ctx[2] = policy
        try:
            return target(*args, **kwargs)
        except RuntimeError as error:
            if type(error) is RuntimeError and not hasattr(error, "_tapefit_context"):
                raise _with_context(error, self, args) from error
            raise
        finally:
            ctx[0], ctx[1], ctx[2] = saved[0], 0, saved[1]

    def _make_lean(self) -> None:
        """Record that later calls of this layer may skip the full path, when that holds."""
        if (
            self.built
            and self._compiled_call_impl is None
            and "forward" not in self.__dict__
            and (not self.autocast or not self._policy.is_mixed)
        ):
            cls = type(self)
            policy = self._policy if self.autocast else None  # None: the enclosing call's policy stays
            cast_to = getattr(torch, self._policy.compute_dtype) if self.autocast else None
            lean = (cls.forward is Layer.forward, cls._call_has_training(), policy, cast_to)
            self.__dict__["_lean_call"] = lean

    def _call_with_policy(self, policy: DTypePolicy, outer: bool, args: tuple, kwargs: dict) -> Any:
        """Enter (or leave) the autocast region of a mixed-precision policy for this call."""
        if policy.is_mixed:
            with mp_policy.compute_context(policy, self._weight_device()):
                out = nn.Module.__call__(self, *args, **kwargs)
            return mp_policy.outputs_to_float32(out) if outer else out
        with torch.autocast(device_type=self._weight_device().type, enabled=False):
            return nn.Module.__call__(self, *mp_policy.outputs_to_float32(args), **kwargs)

    def _build_from_call(self, args: tuple, kwargs: dict) -> None:
        first = args[0] if args else kwargs.get("inputs")
        shape = _shape_of(first)
        if type(self).build is not Layer.build or not self.built:
            self.build(shape)
        self.built = True
        self._build_shapes_dict = shape

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Output shape for ``input_shape`` (None for unknown sizes), found by a symbolic call."""
        from . import symbolic

        return symbolic.infer_output_shape(self, input_shape)

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
