"""Symbolic tensors for the functional API: ``Input``, ``KerasTensor`` and the graph ``Node``s.

Calling a layer on ``KerasTensor``s records a ``Node`` and returns new ``KerasTensor``s whose
shapes are inferred by running the layer on fake tensors (``FakeTensorMode``: no memory, no
compute). Unknown sizes (``None``) are found by running twice with different placeholder sizes
and keeping the dimensions that changed as ``None``. Arithmetic and slicing on symbolic tensors
become ``TensorOp`` layers so that they are part of the graph, serialisable and savable.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .. import config
from .._naming import unique_name
from ._calling import CallMixin
from .layer import Layer

__all__ = ["KerasTensor", "Input", "InputLayer", "Node", "TensorOp"]

_PLACEHOLDERS = ({"batch": 2, "other": 32}, {"batch": 3, "other": 40})


def _dtype(d: Any) -> torch.dtype:
    if d is None:
        return getattr(torch, config.floatx())
    if isinstance(d, torch.dtype):
        return d
    return getattr(torch, str(d).replace("torch.", ""))


class KerasTensor:
    """A placeholder with a shape (``None`` for unknown sizes) and dtype, produced by a layer."""

    def __init__(self, shape: Sequence[int | None], dtype: Any = None, name: str | None = None):
        self.shape = tuple(None if s is None else int(s) for s in shape)
        self.dtype = _dtype(dtype)
        self.name = name
        self._keras_history: tuple[Layer, int, int] | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        return f"<KerasTensor shape={self.shape}, dtype={dt}, name={self.name}>"

    def __len__(self) -> int:
        raise TypeError("A symbolic tensor has no length; use its .shape.")

    def __bool__(self) -> bool:
        raise TypeError("A symbolic tensor has no truth value; use layers (or tapefit ops) on it instead.")

    def __getitem__(self, key: Any) -> KerasTensor:
        return TensorOp("getitem", operand=_encode_key(key))(self)

    def _binary(self, op: str, other: Any, reverse: bool = False) -> KerasTensor:
        if isinstance(other, KerasTensor):
            return TensorOp(op, reverse=reverse)([self, other])
        return TensorOp(op, operand=_plain(other), reverse=reverse)(self)

    def __add__(self, o: Any) -> KerasTensor:
        return self._binary("add", o)

    def __radd__(self, o: Any) -> KerasTensor:
        return self._binary("add", o, True)

    def __sub__(self, o: Any) -> KerasTensor:
        return self._binary("sub", o)

    def __rsub__(self, o: Any) -> KerasTensor:
        return self._binary("sub", o, True)

    def __mul__(self, o: Any) -> KerasTensor:
        return self._binary("mul", o)

    def __rmul__(self, o: Any) -> KerasTensor:
        return self._binary("mul", o, True)

    def __truediv__(self, o: Any) -> KerasTensor:
        return self._binary("truediv", o)

    def __rtruediv__(self, o: Any) -> KerasTensor:
        return self._binary("truediv", o, True)

    def __pow__(self, o: Any) -> KerasTensor:
        return self._binary("pow", o)

    def __matmul__(self, o: Any) -> KerasTensor:
        return self._binary("matmul", o)

    def __neg__(self) -> KerasTensor:
        return TensorOp("neg")(self)


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def _encode_key(key: Any) -> Any:
    if isinstance(key, tuple):
        return {"tuple": [_encode_key(k) for k in key]}
    if isinstance(key, slice):
        return {"slice": [key.start, key.stop, key.step]}
    if key is Ellipsis:
        return {"ellipsis": True}
    if key is None or isinstance(key, int):
        return key
    raise TypeError(f"Unsupported index {key!r} on a symbolic tensor: use ints, slices, None and ...")


def _decode_key(key: Any) -> Any:
    if isinstance(key, dict):
        if "tuple" in key:
            return tuple(_decode_key(k) for k in key["tuple"])
        if "slice" in key:
            return slice(*key["slice"])
        return Ellipsis
    return key


_OPS = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "pow": operator.pow,
    "matmul": operator.matmul,
}


class TensorOp(Layer):
    """Arithmetic or indexing applied to symbolic tensors (``x[:, 0]``, ``2 * x + y``)."""

    # As Keras's ops (which are not layers), it drops an input's mask without a warning.
    _masks_by_default = True

    def compute_mask(self, inputs: Any, previous_mask: Any) -> None:
        return None

    def __init__(self, op: str, operand: Any = None, reverse: bool = False, **kwargs: Any):
        if op not in _OPS and op not in ("neg", "getitem"):
            raise ValueError(f"TensorOp: unknown op {op!r}")
        super().__init__(name=kwargs.pop("name", None) or unique_name(op), **kwargs)
        self.op, self.operand, self.reverse = op, operand, reverse
        self._key = _decode_key(operand) if op == "getitem" else None

    def call(self, inputs: Any) -> torch.Tensor:
        if self.op == "neg":
            return -inputs
        if self.op == "getitem":
            return inputs[self._key]
        if isinstance(inputs, (list, tuple)):
            a, b = inputs
        else:
            a, b = inputs, torch.as_tensor(self.operand, dtype=inputs.dtype, device=inputs.device)
        return _OPS[self.op](b, a) if self.reverse else _OPS[self.op](a, b)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "op": self.op, "operand": self.operand, "reverse": self.reverse}


class Node:
    """One call of a layer in a graph: its inputs (a structure of KerasTensors) and outputs."""

    def __init__(self, layer: Layer, args: tuple, kwargs: dict, outputs: Any):
        self.layer, self.args, self.kwargs, self.outputs = layer, args, kwargs, outputs
        self.input_tensors = _flatten((args, kwargs))
        self.output_tensors = _flatten(outputs)

    @property
    def parent_nodes(self) -> list[Node]:
        out = []
        for t in self.input_tensors:
            layer, idx, _ = t._keras_history
            out.append(layer._inbound_nodes[idx])
        return out


def _flatten(struct: Any) -> list[KerasTensor]:
    if isinstance(struct, KerasTensor):
        return [struct]
    if isinstance(struct, (list, tuple)):
        return [t for s in struct for t in _flatten(s)]
    if isinstance(struct, dict):
        return [t for s in struct.values() for t in _flatten(s)]
    return []


def map_structure(fn: Any, struct: Any) -> Any:
    if isinstance(struct, (list, tuple)):
        return type(struct)(map_structure(fn, s) for s in struct)
    if isinstance(struct, dict):
        return {k: map_structure(fn, v) for k, v in struct.items()}
    return fn(struct)


def any_symbolic(args: tuple, kwargs: dict) -> bool:
    for a in args:
        if isinstance(a, KerasTensor) or (isinstance(a, (list, tuple, dict)) and _flatten(a)):
            return True
    return bool(kwargs) and bool(_flatten(kwargs))


def _placeholder_shape(shape: Sequence[int | None], which: int) -> tuple[int, ...]:
    ph = _PLACEHOLDERS[which]
    return tuple((ph["batch"] if i == 0 else ph["other"]) if s is None else s for i, s in enumerate(shape))


# Depth of shape probes in progress (see ``shape_probe``).
_probing = [0]


@contextlib.contextmanager
def shape_probe() -> Iterator[None]:
    """Calls inside only look at output shapes (placeholder, fake or sample inputs), so layers that
    keep state across calls (stateful RNNs) leave it alone: ``probing_shapes()`` is True there."""
    _probing[0] += 1
    try:
        yield
    finally:
        _probing[0] -= 1


def probing_shapes() -> bool:
    """Whether the current call is a shape probe (see ``shape_probe``)."""
    return _probing[0] > 0


def _run(layer: Layer, args: tuple, kwargs: dict, which: int, fake: bool) -> Any:
    with shape_probe():
        return _run_probe(layer, args, kwargs, which, fake)


def _run_probe(layer: Layer, args: tuple, kwargs: dict, which: int, fake: bool) -> Any:
    from torch._subclasses.fake_tensor import FakeTensorMode

    device = layer._weight_device()

    def make(t: Any) -> Any:
        if isinstance(t, KerasTensor):
            return torch.zeros(_placeholder_shape(t.shape, which), dtype=t.dtype, device=device)
        return t

    kwargs = dict(kwargs)
    if layer._call_has_training():
        kwargs["training"] = False
    with torch.no_grad():
        if not fake:
            return Layer.__call__(layer, *map_structure(make, args), **map_structure(make, kwargs))
        with FakeTensorMode(allow_non_fake_inputs=True):
            return Layer.__call__(layer, *map_structure(make, args), **map_structure(make, kwargs))


def _needs_real_build(layer: Layer) -> bool:
    return any(isinstance(m, Layer) and not m.built for m in layer.modules() if m is not layer)


def infer_outputs(layer: Layer, args: tuple, kwargs: dict) -> Any:
    """Output KerasTensors (shape, dtype) of ``layer`` called on symbolic ``args``."""
    if (
        getattr(layer, "_preserves_shape", False)
        and len(args) == 1
        and isinstance(args[0], KerasTensor)
        and not kwargs
    ):
        x = args[0]  # element-wise and normalisation layers: no need to run anything
        return KerasTensor(x.shape, x.dtype if x.dtype.is_floating_point else _dtype(None))
    first = _run(layer, args, kwargs, 0, fake=not _needs_real_build(layer))
    second = _run(layer, args, kwargs, 1, fake=True)

    def merge(a: Any, b: Any) -> Any:
        if isinstance(a, torch.Tensor):
            shape = [x if x == y else None for x, y in zip(a.shape, b.shape)]
            return KerasTensor(shape, a.dtype)
        if isinstance(a, (list, tuple)):
            return type(a)(merge(x, y) for x, y in zip(a, b))
        if isinstance(a, dict):
            return {k: merge(a[k], b[k]) for k in a}
        raise TypeError(
            f"Layer {layer.name!r} returned {type(a).__name__}; layers in a functional model "
            "must return tensors (or lists/dicts of tensors)."
        )

    return merge(first, second)


def _build_symbolically(layer: Layer, args: tuple, kwargs: dict) -> None:
    """``build`` from symbolic inputs by the layer rule (a nested model's own ``_build_from_call``
    expects real tensors)."""
    CallMixin._build_from_call(
        layer,
        args,
        kwargs,
        lambda x: map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else t, x),
    )


def symbolic_call(layer: Layer, args: tuple, kwargs: dict) -> Any:
    """Record ``layer(*args, **kwargs)`` in the graph and return the symbolic outputs."""
    kwargs = dict(kwargs)
    kwargs.pop("training", None)
    if not layer.built:
        _build_symbolically(layer, args, kwargs)
    try:
        outputs = infer_outputs(layer, args, kwargs)
    except Exception as e:
        if hasattr(e, "_tapefit_context") and e.__cause__ is not None:
            e = e.__cause__  # the shapes below say more than the fake tensors' context
        shapes = [t.shape for t in _flatten((args, kwargs))]
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) cannot be called on inputs of shape "
            f"{shapes[0] if len(shapes) == 1 else shapes}: {e}"
        ) from e
    if not hasattr(layer, "_inbound_nodes"):
        layer._inbound_nodes = []
    node = Node(layer, args, kwargs, outputs)
    node_index = len(layer._inbound_nodes)
    layer._inbound_nodes.append(node)
    for i, t in enumerate(node.output_tensors):
        t._keras_history = (layer, node_index, i)
        t.name = layer.name if len(node.output_tensors) == 1 else f"{layer.name}_{i}"
    return outputs


def infer_output_shape(layer: Layer, input_shape: Any) -> Any:
    """``compute_output_shape`` for any layer: a symbolic call on a throwaway input."""

    def to_kt(s: Any) -> Any:
        if isinstance(s, (list, tuple)) and s and isinstance(s[0], (list, tuple)):
            return [to_kt(x) for x in s]
        if isinstance(s, dict):
            return {k: to_kt(v) for k, v in s.items()}
        return KerasTensor(s)

    kt = to_kt(input_shape)
    if not layer.built:
        _build_symbolically(layer, (kt,), {})
    out = infer_outputs(layer, (kt,), {})
    return map_structure(lambda t: t.shape, out)


class InputLayer(Layer):
    """The layer behind ``Input``: it has no weights and produces the graph's input tensor."""

    def __init__(
        self,
        shape: Sequence[int | None] | None = None,
        batch_size: int | None = None,
        dtype: Any = None,
        name: str | None = None,
        batch_shape: Sequence[int | None] | None = None,
        sparse: bool | None = None,
        input_shape: Any = None,
        batch_input_shape: Any = None,
        **kwargs: Any,
    ):
        shape = shape if shape is not None else input_shape
        batch_shape = batch_shape if batch_shape is not None else batch_input_shape
        if shape is None and batch_shape is None:
            raise ValueError("Input needs a shape: Input(shape=(28, 28, 1)) (without the batch dimension).")
        if sparse:
            raise ValueError("Sparse inputs are not supported; pass dense tensors.")
        if batch_shape is None:
            if isinstance(shape, int):
                shape = (shape,)
            batch_shape = (batch_size, *tuple(shape))
        super().__init__(name=name or unique_name("input_layer"), dtype=None, **kwargs)
        self._batch_input_shape = tuple(batch_shape)
        self._input_dtype = _dtype(dtype)
        self.built = True
        self.output = KerasTensor(self._batch_input_shape, self._input_dtype, name=self.name)
        self._inbound_nodes = [Node(self, (), {}, self.output)]
        self.output._keras_history = (self, 0, 0)

    def call(self, inputs: Any) -> Any:
        return inputs

    @property
    def batch_shape(self) -> tuple:
        return self._batch_input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            "batch_shape": list(self._batch_input_shape),
            "dtype": str(self._input_dtype).replace("torch.", ""),
            "name": self.name,
        }


def Input(
    shape: Sequence[int | None] | None = None,
    batch_size: int | None = None,
    dtype: Any = None,
    name: str | None = None,
    batch_shape: Sequence[int | None] | None = None,
    sparse: bool | None = None,
    tensor: Any = None,
) -> KerasTensor:
    """A symbolic input of ``shape`` (without the batch dimension), the start of a functional model.

    Example:
        >>> import tapefit
        >>> x = tapefit.Input((28, 28, 1))
        >>> x.shape
        (None, 28, 28, 1)
    """
    if tensor is not None:
        raise ValueError("Input(tensor=...) is not supported: build the graph from Input(shape=...).")
    return InputLayer(
        shape=shape, batch_size=batch_size, dtype=dtype, name=name, batch_shape=batch_shape, sparse=sparse
    ).output
