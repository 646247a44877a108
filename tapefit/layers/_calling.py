"""How a tapefit layer is called: the Keras call contract on top of ``nn.Module.__call__``.

Owns the call context (the ``training`` flag inherited by nested calls, the mixed-precision
policy in force), building on the first call, moving the outermost inputs to the weights'
device, casting floating inputs to the compute dtype, and the error boundary that names the
failing layer. A built layer with no hooks and no mixed policy takes the lean path: its
``call`` runs directly, without torch's module machinery, for the overhead-bound models.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as _torch_module

from .. import config
from .._masking import MASK_ATTR as _MASK
from .._masking import any_mask, flat, get_mask, keep_mask, masks_of, set_mask
from ..mixed_precision import policy as mp_policy
from ..mixed_precision.policy import DTypePolicy

__all__ = ["CallMixin", "current_training"]


def _symbolic() -> Any:
    """The functional-API module (imported late: it builds on this one)."""
    from . import symbolic

    return symbolic


# The training flag of the innermost enclosing layer call (None outside any call), so that
# nested layers called without ``training=`` inherit it, as in Keras.
# [training, depth, dtype policy, policy is mixed, the layer whose masks are being handled]
_call_context: list[Any] = [None, 0, None, False, None]

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
        if device is None or x.device == device:
            return x
        return keep_mask(x, x.to(device, non_blocking=True))
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


def _arrays_to_tensor(kwargs: dict, device: torch.device | None) -> dict:
    """``kwargs`` with numpy arrays converted as inputs are (Keras converts array keyword arguments
    such as ``attention_mask``; plain numbers stay numbers)."""
    for k, v in kwargs.items():
        if isinstance(v, np.ndarray):
            return {k: _to_tensor(v, device) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    return kwargs


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
            return keep_mask(a, a.to(dtype)) if a.is_floating_point() and a.dtype is not dtype else a
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
        if isinstance(candidate, CallMixin):
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


def _first_input(args: tuple, kwargs: dict, layer: Any = None) -> Any:
    """The call's first input: the first positional argument, else ``inputs=``, else (given the
    layer) the keyword for ``call``'s first parameter, as in ``mha(query=q, value=v)``."""
    if args:
        return args[0]
    if "inputs" in kwargs or layer is None:
        return kwargs.get("inputs")
    return kwargs.get(next(iter(type(layer)._call_signature().parameters), "inputs"))


def _holds_tensors(value: Any) -> bool:
    """A tensor, or a non-empty list/tuple/dict of tensors (None allowed): a tensor argument."""
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)) and value:
        leaves = flat(value)
        return all(v is None or isinstance(v, torch.Tensor) for v in leaves) and any(
            isinstance(v, torch.Tensor) for v in leaves
        )
    return False


def _first_masked(args: tuple, kwargs: dict) -> bool:
    """Whether the first input (a tensor, or a list/tuple/dict of them) carries a mask; a loop
    rather than ``any_mask(masks_of(...))``, as merges pay it on every call."""
    first = _first_input(args, kwargs)
    if isinstance(first, (list, tuple)):
        for x in first:
            if get_mask(x) is not None:
                return True
        return False
    if isinstance(first, dict):
        return any_mask(masks_of(first))
    return get_mask(first) is not None


def _shape_of(x: Any) -> Any:
    if isinstance(x, torch.Tensor) or hasattr(x, "shape"):
        return tuple(x.shape)
    if isinstance(x, (list, tuple)):
        return [_shape_of(v) for v in x]
    if isinstance(x, dict):
        return {k: _shape_of(v) for k, v in x.items()}
    return None


class CallMixin:
    """``Layer``'s calling half: ``build``/``call``/``forward`` and ``__call__``'s two paths.

    Mixed into :class:`~tapefit.layers.Layer`, which provides the state read here (``built``,
    ``autocast``, the dtype policy, the weights' device and the added losses).
    """

    _accepts_training: bool | None = None
    # True for layers that can create a mask from unmasked inputs (``Embedding(mask_zero=True)``,
    # ``Masking``, ``Lambda(mask=)``, a user's class overriding ``compute_mask``): their calls take
    # the masking path even when no input carries a mask.
    _produces_mask = False
    # True for layers whose ``call`` takes a mask per input (``query_mask``, ``value_mask``): their
    # calls take the masking path when any input, not only the first, carries a mask.
    _mask_per_input = False

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
            fn = cls.call if cls.forward is CallMixin.forward else cls.forward
            params = inspect.signature(fn).parameters
            cls._accepts_training = "training" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
            )
        return cls.__dict__["_accepts_training"]

    @classmethod
    def _call_signature(cls) -> inspect.Signature:
        """``call``'s (or an overridden ``forward``'s) signature without ``self``, cached per class."""
        if cls.__dict__.get("_signature") is None:
            fn = cls.call if cls.forward is CallMixin.forward else cls.forward
            sig = inspect.signature(fn)
            cls._signature = sig.replace(parameters=list(sig.parameters.values())[1:])
        return cls.__dict__["_signature"]

    def _fill_masks(self, args: tuple, kwargs: dict) -> dict:
        """``kwargs`` with the inputs' masks for ``call``'s mask arguments, by Keras's rule: ``mask``
        when ``call`` gets one tensor argument, ``<name>_mask`` for each of several (``query_mask``)."""
        signature = type(self)._call_signature()
        params = signature.parameters
        if "mask" not in params and not any(p.endswith("_mask") for p in params):
            return kwargs
        given = {k: v for k, v in kwargs.items() if k in params or k != "training"}
        try:
            bound = signature.bind(*args, **given).arguments
        except TypeError:
            return kwargs
        tensors = {name: value for name, value in bound.items() if _holds_tensors(value)}
        names = ["mask"] if len(tensors) == 1 else [f"{name}_mask" for name in tensors]
        for key, value in zip(names, tensors.values()):
            if key in params and bound.get(key) is None and any_mask(masks_of(value)):
                kwargs = {**kwargs, key: masks_of(value)}
        return kwargs

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Keras calls ``compute_mask`` of every layer that overrides it, so a user's layer that does
        # may create a mask from unmasked inputs. tapefit's own mask makers say so themselves.
        if (
            "compute_mask" in cls.__dict__
            and "_produces_mask" not in cls.__dict__
            and not cls.__module__.startswith("tapefit.")
        ):
            cls._produces_mask = True
        params = cls._call_signature().parameters
        cls._mask_per_input = any(f"{name}_mask" in params for name in params)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        one_tensor = len(args) == 1 and type(args[0]) is torch.Tensor
        if not one_tensor and _symbolic().any_symbolic(args, kwargs):
            return _symbolic().symbolic_call(self, args, kwargs)
        ctx = _call_context
        if (
            (getattr(args[0], _MASK, None) is not None if one_tensor else _first_masked(args, kwargs))
            or self._produces_mask
            or (kwargs and kwargs.get("mask") is not None)
            or (self._mask_per_input and any_mask(masks_of([args, kwargs])))
        ) and ctx[4] is not self:
            return self._masked_call(args, kwargs)
        training = kwargs.pop("training", None) if kwargs else None
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
            if kwargs:
                kwargs = _arrays_to_tensor(kwargs, device)
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

    def _masked_call(self, args: tuple, kwargs: dict) -> Any:
        """A call whose inputs carry masks, or of a layer that makes one: Keras's contract.

        The inputs' masks go to ``call``'s ``mask=`` or ``<name>_mask=`` arguments (an explicit
        mask wins); a layer that supports masking attaches ``compute_mask(inputs, mask)`` to
        outputs that have none yet; any other layer drops the mask, with Keras's warning.
        """
        ctx = _call_context
        if ctx[1] == 0:  # outermost: masks are computed from inputs where the call puts them
            device = self._weight_device() if self.built or self._parameters or self._modules else None
            args = _to_tensor(args, device)
            kwargs = {
                k: _to_tensor(v, device) if k.endswith("mask") or isinstance(v, np.ndarray) else v
                for k, v in kwargs.items()
            }
        kwargs = self._fill_masks(args, kwargs)
        first = _first_input(args, kwargs, self)
        previous = kwargs["mask"] if kwargs.get("mask") is not None else masks_of(first)
        saved, ctx[4] = ctx[4], self
        try:
            outputs = self(*args, **kwargs)
        finally:
            ctx[4] = saved
        if self.supports_masking:  # type: ignore[attr-defined]
            leaves = flat(outputs)
            if not all(get_mask(t) is not None for t in leaves if isinstance(t, torch.Tensor)):
                masks = self.compute_mask(first, previous)  # type: ignore[attr-defined]
                for tensor, mask in zip(leaves, flat(masks)):
                    if mask is not None and isinstance(tensor, torch.Tensor) and get_mask(tensor) is None:
                        set_mask(tensor, mask)
        elif any_mask(previous):
            warnings.warn(
                f"Layer {self.name!r} ({type(self).__name__}) was passed an input with a mask attached to "  # type: ignore[attr-defined]
                "it, but it does not support masking, so the mask is dropped: the layers after it do not "
                "see it. Set supports_masking = True on a layer that keeps timesteps in place.",
                stacklevel=3,
            )
        return outputs

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
        if kwargs:
            kwargs = _arrays_to_tensor(kwargs, device)
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
            lean = (cls.forward is CallMixin.forward, cls._call_has_training(), policy, cast_to)
            self.__dict__["_lean_call"] = lean

    def _call_with_policy(self, policy: DTypePolicy, outer: bool, args: tuple, kwargs: dict) -> Any:
        """Enter (or leave) the autocast region of a mixed-precision policy for this call."""
        if policy.is_mixed:
            with mp_policy.compute_context(policy, self._weight_device()):
                out = nn.Module.__call__(self, *args, **kwargs)
            return mp_policy.outputs_to_float32(out) if outer else out
        with torch.autocast(device_type=self._weight_device().type, enabled=False):
            return nn.Module.__call__(self, *mp_policy.outputs_to_float32(args), **kwargs)

    def _build_from_call(self, args: tuple, kwargs: dict, shape_of: Callable[[Any], Any] = _shape_of) -> None:
        """``build`` from the call's inputs, by Keras's rule: the first input's shape, or, for a
        ``build(query_shape, value_shape, ...)``, each named call argument's shape."""
        names = type(self)._build_arg_names()
        if names is None:
            shape = shape_of(args[0] if args else kwargs.get("inputs"))
        else:
            signature = type(self)._call_signature()
            given = {k: v for k, v in kwargs.items() if k in signature.parameters}
            bound = signature.bind_partial(*args, **given).arguments
            shape = {f"{name}_shape": shape_of(bound.get(name)) for name in names}
        if type(self).build is not CallMixin.build or not self.built:
            self.build(**shape) if names else self.build(shape)
        self.built = True
        self._build_shapes_dict = shape

    @classmethod
    def _build_arg_names(cls) -> tuple[str, ...] | None:
        """The call arguments whose shapes ``build`` takes by name, or None when it takes one shape."""
        if "_build_args" not in cls.__dict__:
            params = list(inspect.signature(cls.build).parameters)[1:]
            named = len(params) > 1 and all(p.endswith("_shape") for p in params)
            cls._build_args = tuple(p[: -len("_shape")] for p in params) if named else None
        return cls.__dict__["_build_args"]

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Output shape for ``input_shape`` (None for unknown sizes), found by a symbolic call."""
        from . import symbolic

        return symbolic.infer_output_shape(self, input_shape)
