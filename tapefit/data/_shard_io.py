"""Elements to and from safetensors shards, for the file cache (``Dataset.cache(filename)``).

A shard holds consecutive elements, one group of tensors per component ``i``:

* ``c{i}``: every row has the same shape, stored stacked (``(rows, *shape)``);
* ``c{i}.data`` + ``c{i}.ndim`` + ``c{i}.dims``: rows of different shapes, flattened and joined,
  with each row's rank and dimensions;
* ``c{i}.utf8`` + ``c{i}.lengths`` + ``c{i}.ndim`` + ``c{i}.dims``: strings, UTF-8 bytes joined,
  with each string's byte length and each row's shape.

Only tensors and JSON ever reach the disk (never pickle), so reading a cache cannot run code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ._structure import Tree, flatten

STRING = "string"


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for ``torch.float32``, ``"string"`` for strings (``str``)."""
    return STRING if dtype is str else str(dtype).removeprefix("torch.")


def leaf_dtype(leaf: Any) -> str:
    return dtype_name(leaf.dtype) if isinstance(leaf, torch.Tensor) else STRING


def leaf_shape(leaf: Any) -> tuple[int, ...]:
    return () if isinstance(leaf, str) else tuple(leaf.shape)


def describe_tree(tree: Tree) -> Any:
    """A JSON value naming a structure (tuple/namedtuple/dict nesting), for comparing pipelines."""
    if tree.kind == "leaf":
        return "*"
    children = [describe_tree(c) for c in tree.children]
    if tree.kind == "dict":
        return {"dict": [[repr(k), c] for k, c in zip(tree.keys, children)]}
    name = tree.ctor.__name__ if hasattr(tree.ctor, "_fields") else "tuple"
    return {name: children}


def merge_shape(a: list | None, b: Sequence[int | None] | None) -> list | None:
    """The most specific shape both fit: ``None`` where dimensions differ, ``None`` rank if ranks do."""
    if a is None or b is None or len(a) != len(b):
        return None
    return [x if x == y else None for x, y in zip(a, b)]


def _copy(leaf: Any) -> Any:
    """A private copy: the consumer may change what it was given in place, the shard must not."""
    if isinstance(leaf, torch.Tensor):
        return leaf.detach().to("cpu", copy=True)
    if isinstance(leaf, np.ndarray):
        return leaf.copy()
    return leaf


class ShardBuffer:
    """Rows waiting to be written as one shard, with what the index records about them."""

    def __init__(self) -> None:
        self.tree: Tree | None = None
        self.dtypes: list[str] = []
        self.shapes: list[list | None] = []
        self.columns: list[list[tuple[bool, Any]]] = []
        self.rows = 0
        self.nbytes = 0

    def _check(self, leaves: list, tree: Tree, batched: bool) -> None:
        dtypes = [leaf_dtype(leaf) for leaf in leaves]
        shapes = [list(leaf_shape(leaf)[1:] if batched else leaf_shape(leaf)) for leaf in leaves]
        if self.tree is None:
            self.tree, self.dtypes, self.shapes = tree, dtypes, shapes
            self.columns = [[] for _ in leaves]
            return
        if tree != self.tree or dtypes != self.dtypes:
            raise TypeError(
                f"cache: the dataset yielded elements of different types, structure {self.tree.describe()} "
                f"with dtypes {self.dtypes} and structure {tree.describe()} with dtypes {dtypes}; a "
                "cached dataset must yield one structure and one dtype per component."
            )
        self.shapes = [merge_shape(a, b) for a, b in zip(self.shapes, shapes)]

    def add(self, element: Any) -> None:
        leaves, tree = flatten(element)
        self._check(leaves, tree, batched=False)
        for column, leaf in zip(self.columns, leaves):
            column.append((False, _copy(leaf)))
            self.nbytes += nbytes(leaf)
        self.rows += 1

    def add_batch(self, batch: Any, rows: int) -> None:
        """``rows`` elements at once, as one element whose leaves have a leading batch dimension."""
        leaves, tree = flatten(batch)
        self._check(leaves, tree, batched=True)
        for column, leaf in zip(self.columns, leaves):
            column.append((True, _copy(leaf)))
            self.nbytes += nbytes(leaf)
        self.rows += rows

    def take(self) -> tuple[dict[str, torch.Tensor], int]:
        """The pending rows encoded as named tensors, and how many rows; the buffer is emptied."""
        tensors: dict[str, torch.Tensor] = {}
        for i, column in enumerate(self.columns):
            tensors.update(_encode(f"c{i}", column))
            column.clear()
        rows, self.rows, self.nbytes = self.rows, 0, 0
        return tensors, rows


def nbytes(leaf: Any) -> int:
    if isinstance(leaf, torch.Tensor):
        return leaf.numel() * leaf.element_size()
    if isinstance(leaf, np.ndarray):
        return int(leaf.nbytes)
    return len(leaf)


def _rows(column: list[tuple[bool, Any]]) -> list:
    out: list = []
    for batched, leaf in column:
        if not batched:
            out.append(leaf)
        elif isinstance(leaf, torch.Tensor):
            out.extend(leaf.unbind(0))
        else:
            out.extend(str(v) if leaf.ndim == 1 else v for v in leaf)
    return out


def _shape_tensors(name: str, shapes: list[tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {
        f"{name}.ndim": torch.tensor([len(s) for s in shapes], dtype=torch.int64),
        f"{name}.dims": torch.tensor([d for s in shapes for d in s], dtype=torch.int64),
    }


def _encode(name: str, column: list[tuple[bool, Any]]) -> dict[str, torch.Tensor]:
    if not isinstance(column[0][1], torch.Tensor):
        rows = _rows(column)
        strings = [s for row in rows for s in ([row] if isinstance(row, str) else row.ravel().tolist())]
        encoded = [s.encode("utf-8") for s in strings]
        utf8 = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        return {
            f"{name}.utf8": torch.from_numpy(utf8),
            f"{name}.lengths": torch.tensor([len(b) for b in encoded], dtype=torch.int64),
            **_shape_tensors(name, [leaf_shape(row) for row in rows]),
        }
    row_shapes = {tuple(leaf.shape[1:]) if batched else tuple(leaf.shape) for batched, leaf in column}
    if len(row_shapes) == 1:
        parts = [leaf if batched else leaf.unsqueeze(0) for batched, leaf in column]
        return {name: torch.cat(parts).contiguous()}
    rows = _rows(column)
    return {
        f"{name}.data": torch.cat([r.reshape(-1) for r in rows]),
        **_shape_tensors(name, [tuple(r.shape) for r in rows]),
    }


def decode(tensors: dict[str, torch.Tensor], num_leaves: int, rows: int) -> list[list]:
    """The rows of each component of a shard written by :class:`ShardBuffer` (checked for length)."""
    columns = []
    for i in range(num_leaves):
        name = f"c{i}"
        if name in tensors:
            column = list(tensors[name].unbind(0))
        elif f"{name}.utf8" in tensors:
            column = _decode_strings(tensors, name)
        elif f"{name}.data" in tensors:
            shapes = _decode_shapes(tensors, name)
            sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
            pieces = tensors[f"{name}.data"].split(sizes)
            column = [p.reshape(s) for p, s in zip(pieces, shapes)]
        else:
            raise ValueError(f"component {i} is missing from the shard")
        if len(column) != rows:
            raise ValueError(f"component {i} has {len(column)} rows where the index says {rows}")
        columns.append(column)
    return columns


def _decode_shapes(tensors: dict[str, torch.Tensor], name: str) -> list[tuple[int, ...]]:
    ndims = tensors[f"{name}.ndim"].tolist()
    dims = tensors[f"{name}.dims"].tolist()
    shapes, start = [], 0
    for n in ndims:
        shapes.append(tuple(dims[start : start + n]))
        start += n
    return shapes


def _decode_strings(tensors: dict[str, torch.Tensor], name: str) -> list:
    raw = tensors[f"{name}.utf8"].numpy().tobytes()
    strings, start = [], 0
    for n in tensors[f"{name}.lengths"].tolist():
        strings.append(raw[start : start + n].decode("utf-8"))
        start += n
    rows, start = [], 0
    for shape in _decode_shapes(tensors, name):
        count = int(np.prod(shape, dtype=np.int64))
        part = strings[start : start + count]
        start += count
        rows.append(part[0] if shape == () else np.array(part, dtype=str).reshape(shape))
    return rows


def elements(columns: list[list], tree: Tree) -> Iterator[Any]:
    """Rebuild elements from per-component rows."""
    if tree.kind == "leaf":
        return iter(columns[0])
    return map(tree.unflatten, zip(*columns))
