"""Source nodes (tensor slices, ranges, generators, factories) and the nodes joining datasets."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ._node import Node
from ._rows import ConcatRows, Plan, RangeRows, TensorRows, ZipRows, can_concat
from ._structure import LEAF, Tree, flatten, flatten_with_paths, normalize, to_leaf
from .spec import INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, TensorSpec


class TensorSlices(Node):
    """The rows of in-memory tensors (``Dataset.from_tensor_slices``)."""

    def __init__(self, tensors: Any):
        pairs = flatten_with_paths(tensors)
        if not pairs:
            raise ValueError(
                "from_tensor_slices: the structure is empty; pass a tensor, an array, or a "
                "tuple/dict of them."
            )
        leaves = []
        for path, value in pairs:
            leaf = to_leaf(value)
            if isinstance(leaf, str) or leaf.ndim == 0:
                raise ValueError(
                    f"from_tensor_slices: component {path} is a scalar; every component needs "
                    "a leading dimension to slice (wrap single values in a list)."
                )
            leaves.append(leaf)
        lengths = [len(leaf) for leaf in leaves]
        if len(set(lengths)) > 1:
            detail = ", ".join(f"{path}: {n}" for (path, _), n in zip(pairs, lengths))
            raise ValueError(
                f"from_tensor_slices: all components must have the same first dimension, got {detail}."
            )
        self.rows = TensorRows(leaves, flatten(tensors)[1])

    def plan(self) -> Plan:
        return Plan.over(self.rows)

    def cardinality(self) -> int:
        return self.rows.n

    def spec(self) -> Any:
        return self.rows.tree.unflatten(
            [TensorSpec.from_value(leaf).without_batch() for leaf in self.rows.leaves]
        )


class RangeSource(Node):
    """``Dataset.range``: arithmetic progressions computed on demand."""

    def __init__(self, start: int, stop: int, step: int, dtype: torch.dtype):
        n = len(range(start, stop, step))
        self.rows = RangeRows(start, step, n, dtype)

    def plan(self) -> Plan:
        return Plan.over(self.rows)

    def cardinality(self) -> int:
        return self.rows.n

    def spec(self) -> TensorSpec:
        return TensorSpec((), self.rows.dtype)


class GeneratorSource(Node):
    """``Dataset.from_generator``: calls ``generator(*args)`` afresh for every pass."""

    def __init__(self, generator: Callable, args: Sequence[Any], signature: Any | None):
        self.generator, self.args, self.signature = generator, tuple(args), signature
        if signature is not None:
            self._specs, self._tree = flatten(signature)

    def generic(self) -> Iterator[Any]:
        for value in self.generator(*self.args):
            yield normalize(value, lists_are_data=True) if self.signature is None else self._convert(value)

    def _convert(self, value: Any) -> Any:
        leaves = _flatten_up_to(self._tree, value, self.signature)
        out = []
        for spec, v in zip(self._specs, leaves):
            leaf = _as_spec_dtype(v, spec.dtype)
            shape = () if isinstance(leaf, str) else tuple(leaf.shape)
            if not spec.is_compatible_shape(shape):
                raise ValueError(
                    f"`generator` yielded an element of shape {shape} where an element of shape "
                    f"{spec.shape} was expected."
                )
            out.append(leaf)
        return self._tree.unflatten(out)

    def cardinality(self) -> int:
        return UNKNOWN_CARDINALITY

    def spec(self) -> Any:
        return self.signature if self.signature is not None else super().spec()


def _flatten_up_to(tree: Tree, value: Any, signature: Any) -> list:
    """The components of ``value`` following ``tree`` (a list may stand for a tuple)."""
    if tree.kind == "leaf":
        return [value]
    mismatch = TypeError(
        f"`generator` yielded an element that did not match the expected structure. The "
        f"expected structure was {signature}, but the yielded element was {value!r}."
    )
    if tree.kind == "dict":
        if not isinstance(value, dict) or set(value) != set(tree.keys):
            raise mismatch
        parts = [value[k] for k in tree.keys]
    else:
        if not isinstance(value, (tuple, list)) or len(value) != len(tree.children):
            raise mismatch
        parts = list(value)
    return [
        leaf for child, part in zip(tree.children, parts) for leaf in _flatten_up_to(child, part, signature)
    ]


def _as_spec_dtype(value: Any, dtype: Any) -> Any:
    if dtype is str:
        if isinstance(value, (str, bytes)):
            return value.decode("utf-8") if isinstance(value, bytes) else value
        leaf = to_leaf(np.asarray(value))
        if not isinstance(leaf, np.ndarray):
            raise TypeError(f"`generator` yielded {value!r} where a string was expected.")
        return leaf
    if isinstance(value, torch.Tensor):
        return value.detach().to(dtype)
    try:
        return torch.as_tensor(np.asarray(value), dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`generator` yielded {value!r}, which cannot be converted to {dtype}: {err}"
        ) from err


class IterableSource(Node):
    """Elements from ``factory()``, called afresh for every pass, with a declared cardinality."""

    def __init__(self, factory: Callable[[], Iterator[Any]], cardinality: int | None):
        self.factory = factory
        self._cardinality = UNKNOWN_CARDINALITY if cardinality is None else int(cardinality)

    def generic(self) -> Iterator[Any]:
        for value in self.factory():
            yield normalize(value, lists_are_data=True)

    def cardinality(self) -> int:
        return self._cardinality

    def state(self) -> dict[str, int] | None:
        getter = getattr(self.factory, "state_dict", None)
        return dict(getter()) if getter is not None else None

    def load_state(self, state: dict[str, int]) -> None:
        self.factory.load_state_dict(state)


class Zip(Node):
    """``Dataset.zip``: elements of several datasets side by side, as long as the shortest."""

    def __init__(self, nodes: Sequence[Node], tree: Tree):
        self.nodes, self.tree = list(nodes), tree

    def plan(self) -> Plan | None:
        plans = [node.plan() for node in self.nodes]
        if not all(p is not None and p.identity for p in plans):
            return None
        return Plan.over(ZipRows([p.rows for p in plans], self.tree))

    def generic(self) -> Iterator[Any]:
        return map(self.tree.unflatten, zip(*self.nodes))

    def cardinality(self) -> int:
        result = INFINITE_CARDINALITY
        for node in self.nodes:
            n = node.cardinality()
            if n == UNKNOWN_CARDINALITY:
                return UNKNOWN_CARDINALITY
            if n != INFINITE_CARDINALITY:
                result = n if result == INFINITE_CARDINALITY else min(result, n)
        return result

    def spec(self) -> Any:
        return self.tree.unflatten([node.spec() for node in self.nodes])


class Concatenate(Node):
    """``a.concatenate(b)``: all of ``a``, then all of ``b``; both must share a structure."""

    def __init__(self, first: Node, second: Node):
        self.first, self.second = first, second

    def plan(self) -> Plan | None:
        a, b = self.first.plan(), self.second.plan()
        if a is None or b is None or not (a.identity and b.identity) or not can_concat(a.rows, b.rows):
            return None
        return Plan.over(ConcatRows(a.rows, b.rows))

    def generic(self) -> Iterator[Any]:
        kind: tuple | None = None
        for part in (self.first, self.second):
            for i, element in enumerate(part):
                if i == 0:
                    kind = _check_same_tree(kind, element)
                yield element

    def cardinality(self) -> int:
        a, b = self.first.cardinality(), self.second.cardinality()
        if INFINITE_CARDINALITY in (a, b):
            return INFINITE_CARDINALITY
        if UNKNOWN_CARDINALITY in (a, b):
            return UNKNOWN_CARDINALITY
        return a + b

    def spec(self) -> Any:
        a_leaves, a_tree = flatten(self.first.spec())
        b_leaves, b_tree = flatten(self.second.spec())
        if a_tree != b_tree:
            raise TypeError(
                f"concatenate: the datasets have different structures {a_tree.describe()} and "
                f"{b_tree.describe()}."
            )
        return a_tree.unflatten([a.most_specific_common(b) for a, b in zip(a_leaves, b_leaves)])


def _check_same_tree(kind: tuple | None, element: Any) -> tuple:
    """Structure and leaf dtypes of ``element``; a TypeError if they differ from ``kind``."""
    leaves, tree = flatten(element)
    got = (tree, tuple(leaf.dtype if isinstance(leaf, torch.Tensor) else str for leaf in leaves))
    if kind is not None and got != kind:
        raise TypeError(
            f"concatenate: incompatible elements, structure {kind[0].describe()} with dtypes {list(kind[1])} "
            f"and structure {tree.describe()} with dtypes {list(got[1])}; both datasets must yield the same "
            "nesting and dtypes."
        )
    return got


def dataset_tree(datasets: Any, is_dataset: Callable[[Any], bool]) -> tuple[list, Tree]:
    """Flatten a nest of datasets for ``zip`` (lists are rejected, as in tf.data)."""
    if isinstance(datasets, list):
        raise TypeError("Dataset.zip: a Python list is not supported; pass a tuple (or dict) of datasets.")
    if is_dataset(datasets):
        return [datasets], LEAF
    leaves, tree = flatten(datasets)
    if not leaves or not all(is_dataset(d) for d in leaves):
        raise TypeError(
            f"Dataset.zip expects a (nested) tuple or dict of Dataset objects, got {type(datasets).__name__}."
        )
    return leaves, tree


def flatten_shapes(output_shapes: Any, count: int) -> list:
    """``from_generator``'s deprecated ``output_shapes`` as one shape per output type."""
    if count == 1 and (output_shapes is None or _is_shape(output_shapes)):
        return [output_shapes]
    flat: list = []

    def walk(x: Any) -> None:
        if _is_shape(x):
            flat.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        else:
            for v in x:
                walk(v)

    walk(output_shapes)
    if len(flat) != count:
        raise ValueError(f"from_generator: output_shapes has {len(flat)} shapes for {count} output_types.")
    return flat


def _is_shape(x: Any) -> bool:
    return (
        x is None
        or isinstance(x, (list, torch.Size))
        or (isinstance(x, tuple) and all(d is None or isinstance(d, int) for d in x))
    )
