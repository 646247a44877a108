"""``Metric``: the base class of every metric, with Keras's API and torch's ``state_dict``.

A metric owns a few accumulator tensors (:class:`tapefit.variables.Variable`) that live on the
device of the data it measures. ``update_state`` only runs tensor ops on them, so it can sit
inside a training step without a host-device sync; ``result()`` returns a device tensor, and
reading it (``float(m.result())``) is the only sync. A metric is deliberately *not* a
``torch.nn.Module``: assigning one to a model must not put its counters in the model's weights.

Each variable records its ``aggregation`` (``"sum"`` or ``"mean"``) so that distributed code can
all-reduce ``metric.variables`` before calling ``result()``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from .. import config, initializers
from .._masking import keep_mask
from ..variables import Variable
from ._utils import auto_name, dtype_name, to_tensor, torch_dtype

__all__ = ["Metric"]

_AGGREGATIONS = ("none", "sum", "mean", "only_first_replica")
_INTERNAL = frozenset({"_variables", "_specs", "_metrics", "_metric_keys", "_device", "_torch_dtype", "_raw"})


class _Raw:
    """Plain-tensor aliases of a metric's variables, by state_dict key.

    They share storage with the Variables, so updating one updates the other. Built-in metrics
    update the aliases: ``torch.compile`` traces in-place ops on plain tensors, while a tensor
    subclass such as ``Variable`` makes AOTAutograd fail.
    """


class _LoadResult(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class _Constant:
    """A constant initial value, which ``reset_state`` writes in place instead of making a tensor."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return torch.full(shape, self.value, dtype=dtype, device=device)


_CONSTANTS = {"zeros": 0.0, "ones": 1.0}


def _resolve_initializer(
    initializer: Any,
) -> Callable[[tuple[int, ...], torch.dtype, torch.device], torch.Tensor]:
    """Turn a name (``"zeros"``), a number, an array or an initializer into a tensor factory."""
    if initializer is None:
        initializer = "zeros"
    if isinstance(initializer, str) and initializer.lower() in _CONSTANTS:
        return _Constant(_CONSTANTS[initializer.lower()])
    if isinstance(initializer, int | float) and not isinstance(initializer, bool):
        return _Constant(initializer)
    if isinstance(initializer, str):
        initializer = initializers.get(initializer)
    if isinstance(initializer, initializers.Initializer):
        init = initializer
        return lambda shape, dtype, device: init(shape, dtype=dtype, device=device)
    if isinstance(initializer, int | float | np.ndarray | torch.Tensor):
        value = initializer
        return lambda shape, dtype, device: (
            torch.as_tensor(value, dtype=dtype, device=device).expand(shape).clone()
        )
    if callable(initializer):
        fn = initializer
        return lambda shape, dtype, device: (
            torch.as_tensor(fn(shape, dtype=dtype), device=device).to(dtype).reshape(shape).clone()
        )
    raise ValueError(
        f"Cannot use {initializer!r} as an initializer; use 'zeros', 'ones', a number or a "
        "callable (shape, dtype) -> array."
    )


def _follows_device(update_state: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``update_state`` so the state moves to the data's device and no autograd graph is built."""

    @functools.wraps(update_state)
    def wrapper(self: Metric, *args: Any, **kwargs: Any) -> Any:
        if not _on_device(self._device, args, kwargs):
            args, kwargs = self._follow_device(args, kwargs)
        if not torch.is_grad_enabled():
            return update_state(self, *args, **kwargs)
        if torch.compiler.is_compiling():
            with torch.no_grad():
                return update_state(self, *args, **kwargs)
        # The raw switch costs a fifth of ``with torch.no_grad()``, which a training step pays per metric.
        torch._C._set_grad_enabled(False)
        try:
            return update_state(self, *args, **kwargs)
        finally:
            torch._C._set_grad_enabled(True)

    wrapper._tapefit_follows_device = True  # type: ignore[attr-defined]
    return wrapper


def _on_device(device: torch.device | None, args: tuple, kwargs: dict) -> bool:
    """Whether every tensor argument already lives on ``device`` (the state's), the usual case."""
    if device is None:
        return False
    for a in args:
        if isinstance(a, torch.Tensor) and a.device != device:
            return False
    for a in kwargs.values():
        if isinstance(a, torch.Tensor) and a.device != device:
            return False
    return True


class Metric:
    """Encapsulates a metric's state (device tensors) and logic, as ``keras.metrics.Metric``.

    Subclasses create their state in ``__init__`` with :meth:`add_variable` (or ``add_weight``),
    accumulate in ``update_state`` with ``assign`` / ``assign_add`` and compute ``result()``.

    Args:
        dtype: dtype of the metric's computations; defaults to ``tapefit.config.floatx()``.
        name: name of the metric instance (the key it gets in the training logs).

    Example:
        >>> import torch
        >>> class BinaryTruePositives(Metric):
        ...     def __init__(self, name="binary_true_positives", **kwargs):
        ...         super().__init__(name=name, **kwargs)
        ...         self.true_positives = self.add_variable(shape=(), initializer="zeros", name="tp")
        ...     def update_state(self, y_true, y_pred, sample_weight=None):
        ...         values = (y_true.bool() & y_pred.bool()).float()
        ...         if sample_weight is not None:
        ...             values = values * sample_weight
        ...         self.true_positives.assign_add(values.sum())
        ...     def result(self):
        ...         return self.true_positives.value.clone()
        >>> m = BinaryTruePositives()
        >>> float(m(torch.tensor([1, 1, 0]), torch.tensor([1, 0, 1])))
        1.0
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get("update_state")
        if fn is not None and not getattr(fn, "_tapefit_follows_device", False):
            cls.update_state = _follows_device(fn)  # type: ignore[method-assign]

    def __init__(self, dtype: str | torch.dtype | None = None, name: str | None = None) -> None:
        self.name = name or auto_name(type(self).__name__)
        self._torch_dtype = torch_dtype(dtype)
        self._variables: list[Variable] = []
        self._specs: list[tuple[Callable[..., torch.Tensor], str]] = []
        self._metrics: list[Metric] = []
        self._metric_keys: list[str] = []
        self._device: torch.device | None = None
        self._raw = _Raw()

    # ----------------------------------------------------------------- the Keras API
    @property
    def dtype(self) -> str:
        """The dtype of the metric's computations, as a name (``"float32"``)."""
        return dtype_name(self._torch_dtype)

    def update_state(self, *args: Any, **kwargs: Any) -> None:
        """Accumulate statistics for the metric."""
        raise NotImplementedError(f"{type(self).__name__} must implement update_state().")

    def result(self) -> torch.Tensor:
        """The current value of the metric, as a tensor on the metric's device."""
        raise NotImplementedError(f"{type(self).__name__} must implement result().")

    def reset_state(self) -> None:
        """Re-initialise every state variable (called by fit/evaluate at the start of each epoch)."""
        with torch.no_grad():
            for variable, (make, _) in zip(self._variables, self._specs):
                if isinstance(make, _Constant):
                    variable.value.fill_(make.value)
                else:
                    variable.assign(make(tuple(variable.shape), variable.dtype, variable.device))
        for metric in self._metrics:
            metric.reset_state()

    def reset_states(self) -> None:
        """Older spelling of :meth:`reset_state` (tf.keras 2)."""
        self.reset_state()

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``update_state(*args, **kwargs)`` then ``result()``."""
        self._check_super_called()
        self.update_state(*args, **kwargs)
        return self.result()

    def add_variable(
        self,
        shape: tuple[int, ...] | list[int] | int = (),
        initializer: Any = "zeros",
        dtype: str | torch.dtype | None = None,
        aggregation: str = "sum",
        name: str | None = None,
    ) -> Variable:
        """Create a state variable on the metric's device and track it.

        Args:
            shape: shape of the variable.
            initializer: ``"zeros"``, ``"ones"``, a number or a callable ``(shape, dtype) -> array``;
                ``reset_state()`` applies it again.
            dtype: defaults to ``tapefit.config.floatx()`` (as Keras: not the metric's dtype).
            aggregation: how replicas combine it: ``"sum"`` or ``"mean"`` (also ``"none"``,
                ``"only_first_replica"``).
            name: name of the variable (the key it gets in :meth:`state_dict`).
        """
        self._check_super_called()
        if aggregation not in _AGGREGATIONS:
            raise ValueError(f"add_variable(aggregation={aggregation!r}): use one of {_AGGREGATIONS}.")
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        make = _resolve_initializer(initializer)
        device = self._device if self._device is not None else config.get_device()
        value = make(shape, torch_dtype(dtype), device)
        variable = Variable(
            value, dtype=value.dtype, name=name or f"variable_{len(self._variables)}", device=device
        )
        variable.aggregation = aggregation
        self._device = variable.device
        self._variables.append(variable)
        self._specs.append((make, aggregation))
        self._refresh_raw()
        return variable

    def add_weight(
        self,
        shape: tuple[int, ...] | list[int] | int = (),
        initializer: Any = "zeros",
        dtype: str | torch.dtype | None = None,
        name: str | None = None,
        aggregation: str = "sum",
    ) -> Variable:
        """Backwards-compatible alias of :meth:`add_variable`."""
        return self.add_variable(
            shape=shape, initializer=initializer, dtype=dtype, aggregation=aggregation, name=name
        )

    @property
    def variables(self) -> list[Variable]:
        """This metric's state variables, then those of the metrics it holds."""
        variables = list(self._variables)
        for metric in self._metrics:
            variables.extend(metric.variables)
        return variables

    # Set by the built-in metrics whose state is sums and counts over samples (see below).
    _per_sample_state = False

    def _sums_over_samples(self, y_true: Any, y_pred: Any) -> bool:
        """Whether updating on several batches like ``(y_true, y_pred)`` one by one equals one
        update on their concatenation, so that an evaluation may update once per chunk of batches.
        True of the built-in metrics of ``(y_true, y_pred)``, whose state is sums and counts over
        samples that each row adds on its own (subclasses refine it where an option looks across
        rows, e.g. an arg-max along axis 0); never of a user's class, whose ``update_state`` may
        look at the batch as a whole."""
        return self._per_sample_state and type(self).__module__.startswith("tapefit.metrics")

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this metric."""
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Metric:
        return cls(**config)

    # ----------------------------------------------------------------- torch-style state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The accumulators by name (detached tensors sharing their storage, as ``Module.state_dict``).

        Held metrics are prefixed by the attribute that holds them (``"acc.total"``).
        """
        state: dict[str, torch.Tensor] = {}
        for key, variable in zip(self._variable_keys(), self._variables):
            state[key] = variable.value.detach()
        for prefix, metric in zip(self._metric_keys, self._metrics):
            for key, value in metric.state_dict().items():
                state[f"{prefix}.{key}"] = value
        return state

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> _LoadResult:
        """Restore the accumulators saved by :meth:`state_dict` (for an exact resume).

        Returns the ``missing_keys`` and ``unexpected_keys``; with ``strict=True`` either is an error.
        """
        if not self._variables and state_dict:
            self._build_from_state_dict(state_dict)
        own = dict(zip(self._variable_keys(), self._variables))
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own and "." not in key]
        for key, variable in own.items():
            if key in state_dict:
                value = torch.as_tensor(state_dict[key])
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"{self.name}.load_state_dict: {key!r} has shape {tuple(value.shape)}, "
                        f"but the metric holds shape {tuple(variable.shape)}."
                    )
                variable.assign(value.to(device=variable.device, dtype=variable.dtype))
        for prefix, metric in zip(self._metric_keys, self._metrics):
            sub = {k[len(prefix) + 1 :]: v for k, v in state_dict.items() if k.startswith(prefix + ".")}
            result = metric.load_state_dict(sub, strict=False)
            missing += [f"{prefix}.{k}" for k in result.missing_keys]
            unexpected += [f"{prefix}.{k}" for k in result.unexpected_keys]
        unexpected += [
            k for k in state_dict if "." in k and not any(k.startswith(p + ".") for p in self._metric_keys)
        ]
        if strict and (missing or unexpected):
            raise KeyError(
                f"{self.name}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}. "
                "Pass strict=False to load what matches."
            )
        return _LoadResult(missing, unexpected)

    def _build_from_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Create lazily built variables from a saved state's shapes (metrics built on first update)."""

    # ----------------------------------------------------------------- tracking and devices
    def __setattr__(self, name: str, value: Any) -> None:
        if "_metric_keys" in self.__dict__ and name not in _INTERNAL:
            self._track(name, value)
        super().__setattr__(name, value)

    def _track(self, name: str, value: Any) -> None:
        if isinstance(value, Metric) and not any(value is m for m in self._metrics):
            self._metrics.append(value)
            self._metric_keys.append(name)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, Metric) and not any(item is m for m in self._metrics):
                    self._metrics.append(item)
                    self._metric_keys.append(f"{name}.{i}")
        elif isinstance(value, Variable) and not any(value is v for v in self._variables):
            value.aggregation = getattr(value, "aggregation", "sum")
            initial = value.value.detach().clone()
            self._variables.append(value)
            self._specs.append(
                (lambda shape, dtype, device: initial.to(device=device, dtype=dtype), value.aggregation)
            )
            if self._device is None:
                self._device = value.device
            self._refresh_raw()

    def _as_tensor(self, x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``x`` as a tensor; arrays and lists land on the metric's device, tensors stay where they are."""
        return to_tensor(x, dtype, self._device if self._device is not None else config.get_device())

    def _variable_keys(self) -> list[str]:
        keys: list[str] = []
        for variable in self._variables:
            key, i = variable.name, 1
            while key in keys:
                key, i = f"{variable.name}_{i}", i + 1
            keys.append(key)
        return keys

    def _follow_device(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Pick the data's device (an accelerator wins over the CPU), move the state there once,
        and bring any input tensor left on another device along."""
        if self._device is not None and all(
            not isinstance(a, torch.Tensor) or a.device == self._device for a in (*args, *kwargs.values())
        ):
            return args, kwargs  # the usual case: everything already where the state lives
        target = None
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, torch.Tensor):
                if arg.device.type != "cpu":
                    target = arg.device
                    break
                if target is None:
                    target = arg.device
        if target is None:
            return args, kwargs
        if self._device != target:
            self._move_to(target)

        def bring(x: Any) -> Any:
            if not isinstance(x, torch.Tensor) or x.device == target:
                return x
            return keep_mask(x, x.to(target, non_blocking=True))

        return tuple(bring(a) for a in args), {k: bring(v) for k, v in kwargs.items()}

    def _move_to(self, device: torch.device) -> None:
        """Move every state variable to ``device``, rebinding the attributes that refer to them."""
        moved: dict[int, Variable] = {}
        for i, old in enumerate(self._variables):
            new = Variable(old.value.detach(), dtype=old.dtype, name=old.name, device=device)
            new.aggregation = getattr(old, "aggregation", "sum")
            self._variables[i] = new
            moved[id(old)] = new
        for key, value in list(self.__dict__.items()):
            if isinstance(value, Variable) and id(value) in moved:
                object.__setattr__(self, key, moved[id(value)])
            elif isinstance(value, list | tuple) and any(id(v) in moved for v in value):
                items = [moved.get(id(v), v) if isinstance(v, Variable) else v for v in value]
                object.__setattr__(self, key, type(value)(items) if isinstance(value, tuple) else items)
            elif isinstance(value, dict) and any(id(v) in moved for v in value.values()):
                value.update({k: moved[id(v)] for k, v in value.items() if id(v) in moved})
        for metric in self._metrics:
            if metric._device != device:
                metric._move_to(device)
        self._device = self._variables[0].device if self._variables else device
        self._refresh_raw()

    def _refresh_raw(self) -> None:
        self._raw = _Raw()
        for key, variable in zip(self._variable_keys(), self._variables):
            setattr(self._raw, key, variable.value)
        # ``count.add_(self._raw._one, alpha=n)`` adds a batch size without wrapping ``n`` in a new
        # tensor, which ``count.add_(n)`` does (a copy kernel per update).
        self._raw._one = torch.ones((), device=self._device or config.get_device())

    def __deepcopy__(self, memo: dict) -> Metric:
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for variable in self._variables:
            twin = Variable(variable.value, dtype=variable.dtype, name=variable.name, device=variable.device)
            twin.aggregation = getattr(variable, "aggregation", "sum")
            memo[id(variable)] = twin
        for key, value in self.__dict__.items():
            if key != "_raw":
                object.__setattr__(clone, key, copy.deepcopy(value, memo))
        clone._refresh_raw()
        return clone

    def _check_super_called(self) -> None:
        if "_variables" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: you forgot to call `super().__init__()` in "
                "`__init__()`; call it before creating variables."
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"
