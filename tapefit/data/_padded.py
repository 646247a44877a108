"""``padded_batch``: batches of elements of different shapes, each padded to a common shape.

tf.data's rules: every component is padded to its ``padded_shapes`` entry, where a ``None`` (or
-1) dimension, or a component without an entry, means "the longest in this batch"; padding
values default to 0 (``False`` for booleans, ``""`` for strings) and may be one value for all
components. Elements are padded at the end of each dimension. An element larger than a fixed
padded dimension is an error naming both shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ._node import Node
from ._structure import Tree, flatten, flatten_with_paths
from ._transforms import Batch
from .spec import TensorSpec

Shape = tuple  # a tuple of int | None (None: the longest in the batch)


class PaddedBatch(Batch):
    """``padded_batch(size, padded_shapes, padding_values, drop_remainder)``. Stateless.

    Over in-memory rows of one shape it gathers batches by index and pads the batch; otherwise
    it collects elements (as ``batch`` does) and pads them into new tensors.
    """

    def __init__(self, up: Node, size: int, drop_remainder: bool, padded_shapes: Any, padding_values: Any):
        super().__init__(up, size, drop_remainder)
        self.padded_shapes, self.padding_values = padded_shapes, padding_values
        self._resolved: dict[tuple, tuple[list, list, list[str]]] = {}

    def __iter__(self) -> Iterator[Any]:
        plan = self.up.plan()
        if plan is not None and plan.rows.dense:
            return map(self._pad_batch, plan.batches(self.size, self.drop_remainder))
        return self.generic()

    def spec(self) -> Any:
        specs, tree = flatten(self.up.spec())
        paths = _paths(tree)
        batch = self.size if self.drop_remainder else None
        if self.padded_shapes is None:
            targets = [spec.shape for spec in specs]
            for path, shape in zip(paths, targets):
                if shape is None:
                    raise ValueError(
                        f"padded_batch: component {path} has an unknown rank; pass `padded_shapes` for it."
                    )
        else:
            targets = self._shapes_for(tree, paths)
        out = []
        for path, spec, target, value in zip(paths, specs, targets, self._values_for(tree)):
            _check_compatible(path, spec.shape, target)
            _padding_value(value, spec.dtype, path)
            out.append(TensorSpec(None if target is None else (batch, *target), spec.dtype, spec.name))
        return tree.unflatten(out)

    # ----------------------------------------------------------------- padding
    def _shapes_for(self, tree: Tree, paths: list[str]) -> list:
        if self.padded_shapes is None:
            return [None] * tree.num_leaves
        return [_as_shape(s, p) for s, p in zip(_up_to(tree, self.padded_shapes, "padded_shapes"), paths)]

    def _values_for(self, tree: Tree) -> list:
        if self.padding_values is None:
            return [None] * tree.num_leaves
        return _up_to(tree, self.padding_values, "padding_values", broadcast=True)

    def _resolve(self, tree: Tree, leaves: list) -> tuple[list, list, list[str]]:
        """Per component: the padded shape (``None``: longest everywhere), the padding value, the path."""
        dtypes = tuple(leaf.dtype if isinstance(leaf, torch.Tensor) else str for leaf in leaves)
        key = (tree, dtypes)
        if key not in self._resolved:
            paths = _paths(tree)
            shapes = self._shapes_for(tree, paths)
            values = [_padding_value(v, d, p) for v, d, p in zip(self._values_for(tree), dtypes, paths)]
            self._resolved[key] = (shapes, values, paths)
        return self._resolved[key]

    def _combine(self, elements: list) -> Any:
        flats = [flatten(e) for e in elements]
        tree = flats[0][1]
        for _, other in flats:
            if other != tree:
                raise ValueError(
                    f"padded_batch: cannot batch elements of different structures {tree.describe()} and "
                    f"{other.describe()}."
                )
        shapes, values, paths = self._resolve(tree, flats[0][0])
        columns = [list(c) for c in zip(*(leaves for leaves, _ in flats))]
        return tree.unflatten([_pad_column(*args) for args in zip(columns, shapes, values, paths)])

    def _pad_batch(self, batch: Any) -> Any:
        leaves, tree = flatten(batch)
        shapes, values, paths = self._resolve(tree, leaves)
        return tree.unflatten([_pad_stacked(*args) for args in zip(leaves, shapes, values, paths)])


def _paths(tree: Tree) -> list[str]:
    return [p for p, _ in flatten_with_paths(tree.unflatten(list(range(tree.num_leaves))))]


def _up_to(tree: Tree, value: Any, what: str, broadcast: bool = False) -> list:
    """``value`` split along the element structure ``tree``; below a leaf position it is one entry."""
    if tree.kind == "leaf":
        return [value]
    if broadcast and not isinstance(value, (tuple, dict)):
        return [value] * tree.num_leaves
    if tree.kind == "dict":
        ok = isinstance(value, dict) and set(value) == set(tree.keys)
        parts = [value[k] for k in tree.keys] if ok else []
    else:
        ok = isinstance(value, tuple) and len(value) == len(tree.children)
        parts = list(value) if ok else []
    if not ok:
        raise TypeError(
            f"padded_batch: `{what}` must follow the structure of the elements, {tree.describe()} (tuples "
            f"and dicts; a shape is a list), got {value!r}."
        )
    return [x for child, part in zip(tree.children, parts) for x in _up_to(child, part, what, broadcast)]


def _as_shape(value: Any, path: str) -> Shape | None:
    """A padded shape: ``None`` (pad every dimension), an int (a vector), or a sequence of
    ints with ``None``/-1 for "the longest in the batch"."""
    if value is None:
        return None
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.tolist()
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple, torch.Size)) or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= -1) for d in value
    ):
        raise TypeError(
            f"padded_batch: the padded shape of component {path} must be a list of ints (None or -1 for "
            f"the longest in the batch), got {value!r}."
        )
    return tuple(None if d is None or d == -1 else int(d) for d in value)


def _check_compatible(path: str, shape: tuple | None, target: Shape | None) -> None:
    if shape is None or target is None:
        return
    too_small = any(t is not None and s is not None and s > t for s, t in zip(shape, target))
    if len(shape) != len(target) or too_small:
        raise ValueError(
            f"padded_batch: the padded shape {_text(target)} of component {path} is not compatible with "
            f"its shape {_text(shape)}: the ranks must match and fixed sizes must not be smaller."
        )


def _padding_value(value: Any, dtype: Any, path: str) -> Any:
    """The padding value as a Python scalar of the component's dtype (tf's default when ``None``)."""
    if dtype is str:
        if value is None:
            return ""
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, str):
            return value
        raise TypeError(f"padded_batch: component {path} holds strings; its padding value must be a str.")
    if value is None:
        return False if dtype == torch.bool else 0
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        if tensor.ndim != 0:
            raise ValueError(
                f"padded_batch: padding values must be scalars, got shape {tuple(tensor.shape)} for "
                f"component {path}."
            )
        if tensor.dtype != dtype:
            raise TypeError(
                f"padded_batch: the padding value for component {path} has dtype {tensor.dtype}, which does "
                f"not match the component's dtype {dtype}."
            )
        return tensor.item()
    allowed = {
        bool: dtype == torch.bool,
        int: dtype != torch.bool,
        float: dtype.is_floating_point or dtype.is_complex,
        complex: dtype.is_complex,
    }
    if type(value) not in allowed or not allowed[type(value)]:
        raise TypeError(
            f"padded_batch: the padding value {value!r} for component {path} does not fit its dtype {dtype}."
        )
    return value


def _shape(leaf: Any) -> tuple[int, ...]:
    return () if isinstance(leaf, str) else tuple(leaf.shape)


def _text(shape: tuple) -> str:
    return str(tuple(shape))


def _target(shapes: list[tuple[int, ...]], padded: Shape | None, path: str) -> tuple[int, ...]:
    """The common shape of a batch's rows of one component, checked against its padded shape."""
    ranks = {len(s) for s in shapes}
    if len(ranks) > 1:
        raise ValueError(
            f"padded_batch: component {path} has elements of different ranks in one batch, shapes "
            f"{sorted(set(shapes), key=len)[:4]}; padding keeps the rank, so map them to one rank first."
        )
    rank = ranks.pop()
    longest = tuple(max(s[d] for s in shapes) for d in range(rank))
    if padded is None:
        return longest
    if len(padded) != rank:
        raise ValueError(
            f"padded_batch: component {path} has elements of rank {rank} (shape {_text(shapes[0])}) but its "
            f"padded shape {_text(padded)} has rank {len(padded)}."
        )
    for d, (size, fixed) in enumerate(zip(longest, padded)):
        if fixed is not None and size > fixed:
            big = next(s for s in shapes if s[d] > fixed)
            raise ValueError(
                f"padded_batch: component {path} has an element of shape {_text(big)}, larger than its "
                f"padded shape {_text(padded)} in dimension {d} ({big[d]} > {fixed}). Raise that padded "
                "size, or use None (or -1) to pad to the longest element of each batch."
            )
    return tuple(longest[d] if fixed is None else fixed for d, fixed in enumerate(padded))


def _pad_column(leaves: list, padded: Shape | None, value: Any, path: str) -> Any:
    """Rows of one component padded to their common target shape and stacked."""
    shapes = [_shape(leaf) for leaf in leaves]
    target = _target(shapes, padded, path)
    first = leaves[0]
    if not isinstance(first, torch.Tensor):
        if any(isinstance(leaf, torch.Tensor) for leaf in leaves):
            raise ValueError(f"padded_batch: component {path} mixes strings and tensors.")
        out = np.full((len(leaves), *target), value, dtype=object)
        for i, leaf in enumerate(leaves):
            out[(i, *(slice(0, n) for n in shapes[i]))] = leaf
        return out.astype(str)
    if any(not isinstance(leaf, torch.Tensor) or leaf.dtype != first.dtype for leaf in leaves):
        raise ValueError(f"padded_batch: component {path} has elements of different dtypes.")
    if all(s == target for s in shapes):
        return torch.stack(leaves)
    out = torch.full((len(leaves), *target), value, dtype=first.dtype, device=first.device)
    for i, leaf in enumerate(leaves):
        out[(i, *(slice(0, n) for n in shapes[i]))] = leaf
    return out


def _pad_stacked(leaf: Any, padded: Shape | None, value: Any, path: str) -> Any:
    """A batch whose rows already share one shape, padded to the fixed sizes of ``padded``."""
    row = _shape(leaf)[1:]
    target = _target([row], padded, path)
    if target == row:
        return leaf
    index = (slice(None), *(slice(0, n) for n in row))
    if isinstance(leaf, torch.Tensor):
        out = torch.full((leaf.shape[0], *target), value, dtype=leaf.dtype, device=leaf.device)
    else:
        out = np.full((leaf.shape[0], *target), value, dtype=object)
    out[index] = leaf
    return out if isinstance(out, torch.Tensor) else out.astype(str)
