"""Keras 3 ``model.weights.h5`` -> a tapefit model's weights: the state half of a ``.keras`` file.

Keras writes each object's own variables to ``<path>/vars/<i>`` (trainable ones first, in creation
order) and walks into sub-objects by attribute name: a model's layers under ``layers/<class>``
(the snake_case class name, numbered ``_1``, ``_2`` in ``model.layers`` order), a recurrent layer's
weights under ``cell``, a wrapper's under ``layer`` / ``forward_layer`` / ``backward_layer``,
MultiHeadAttention's under ``query_dense`` ... ``output_dense``. tapefit's layers keep Keras's
attribute names, so one walk over the tapefit model finds every array. Everything is read and
checked before any weight changes; the file's links, external and virtual datasets are refused.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from ._keras_config import KerasFormatError

__all__ = ["H5Reader", "h5py_module", "keras_snake_case", "stage_model_weights", "keras_layer_order"]

_RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN")


def h5py_module() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "Reading Keras .keras and .weights.h5 files needs the h5py package: pip install h5py "
            "(or pip install 'tapefit[keras-format]')."
        ) from None
    return h5py


def keras_snake_case(name: str) -> str:
    """Keras's ``to_snake_case`` (the names of its weight groups), which differs from tapefit's on
    capitals followed by digits."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class H5Reader:
    """Checked access to an open ``h5py.File``: hard links only, numeric in-file datasets only, all
    of them together no larger than ``max_bytes`` once read (a compressed file cannot inflate past
    it); every dataset read is remembered."""

    def __init__(self, f: Any, where: str, max_bytes: int):
        self.h5py = h5py_module()
        self.f, self.where, self.max_bytes = f, where, max_bytes
        self.read: set[str] = set()
        self.bytes_read = 0

    def get(self, path: str) -> Any:
        node = self.f
        for part in [p for p in path.split("/") if p]:
            if not isinstance(node, self.h5py.Group) or part not in node:
                return None
            if not isinstance(node.get(part, getlink=True), self.h5py.HardLink):
                raise KerasFormatError(f"{self.where}: {path!r} is a link; refusing to follow it.")
            node = node[part]
        return node

    def arrays(self, path: str) -> list[np.ndarray] | None:
        """The datasets ``path/vars/0``, ``1``, ... in order (None when there is no ``vars`` group)."""
        group = self.get(f"{path}/vars")
        if group is None:
            return None
        names = list(group.keys())
        if sorted(names, key=lambda n: int(n) if n.isdigit() else -1) != [str(i) for i in range(len(names))]:
            raise KerasFormatError(f"{self.where}: {path}/vars holds unexpected entries {names[:10]}.")
        return [self.dataset(f"{path}/vars/{i}") for i in range(len(names))]

    def dataset(self, path: str) -> np.ndarray:
        ds = self.get(path)
        if not isinstance(ds, self.h5py.Dataset):
            raise KerasFormatError(f"{self.where}: {path!r} is not a dataset.")
        if ds.is_virtual or ds.external:
            raise KerasFormatError(f"{self.where}: {path!r} refers to data outside the file; refusing it.")
        if ds.dtype.kind not in "biuf" or self.bytes_read + ds.nbytes > self.max_bytes:
            raise KerasFormatError(
                f"{self.where}: {path!r} is a {ds.dtype} dataset of {ds.nbytes} bytes; expected numbers, "
                f"and at most {self.max_bytes} bytes for the whole file ({self.bytes_read} read so far)."
            )
        self.bytes_read += ds.nbytes
        self.read.add(path.strip("/"))
        return np.asarray(ds[()])

    def datasets_under(self, path: str) -> list[str]:
        group = self.get(path)
        found: list[str] = []
        if isinstance(group, self.h5py.Group):
            prefix = f"{path.strip('/')}/".lstrip("/")
            group.visititems(
                lambda n, o: found.append(f"{prefix}{n}") if isinstance(o, self.h5py.Dataset) else None
            )
        return found


def _is_model(layer: Any) -> bool:
    from ..models.model import Model

    return isinstance(layer, Model) and (getattr(layer, "_graph", None) is not None or _is_sequential(layer))


def _is_sequential(layer: Any) -> bool:
    from ..models.sequential import Sequential

    return isinstance(layer, Sequential)


def keras_layer_order(model: Any) -> list[Any]:
    """``model.layers`` in Keras's order: Sequential's stack, or a functional graph's operations by
    decreasing depth, then first visit in a depth-first walk from the outputs (Keras's
    ``map_graph``), without tapefit's ``TensorOp``s (Keras ops are not layers)."""
    from ..layers.symbolic import InputLayer, TensorOp

    if _is_sequential(model):
        return list(model.layers)
    plan = model._graph
    finished: set[int] = set()
    ordered: list[Any] = []  # nodes from the inputs to the outputs
    first_seen: dict[int, int] = {}
    inputs = {id(t) for t in plan.input_tensors}

    def visit(tensor: Any) -> None:
        layer, index, _ = tensor._keras_history
        node = layer._inbound_nodes[index]
        if id(node) in finished:
            return
        is_input = isinstance(layer, InputLayer)
        if not is_input and id(tensor) in inputs:
            finished.add(id(node))
            return
        first_seen.setdefault(id(layer), len(first_seen))
        if not is_input:
            for t in node.input_tensors:
                visit(t)
        finished.add(id(node))
        ordered.append(node)

    for t in plan.output_tensors:
        visit(t)
    node_depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    layers: dict[int, Any] = {}
    in_graph = {id(n) for n in ordered}
    for node in reversed(ordered):
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = node_depth[id(node)] = depth
        layers[id(node.layer)] = node.layer
        for t in node.input_tensors:
            parent = t._keras_history[0]._inbound_nodes[t._keras_history[1]]
            if id(parent) in in_graph:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for t in plan.input_tensors:
        layer = t._keras_history[0]
        if id(layer) not in layer_depth:
            layer_depth[id(layer)], first_seen[id(layer)], layers[id(layer)] = 0, -1, layer
    order = sorted(layers, key=lambda i: (-layer_depth[i], first_seen[i]))
    return [layers[i] for i in order if not isinstance(layers[i], TensorOp)]


def _own_weights(layer: Any) -> list[tuple[str, torch.Tensor]]:
    """A layer's own weights in Keras's saving order: trainable ones first, each in creation order."""
    names = list(layer._weight_names)
    trainable = [n for n in names if layer._intrinsic_trainable.get(n, True)]
    return [(n, getattr(layer, n)) for n in trainable + [n for n in names if n not in trainable]]


def _container_names(children: list[Any]) -> list[str]:
    used: dict[str, int] = {}
    out = []
    for child in children:
        base = keras_snake_case(type(child).__name__)
        used[base] = used.get(base, -1) + 1
        out.append(base if used[base] == 0 else f"{base}_{used[base]}")
    return out


class _Stager:
    def __init__(self, reader: H5Reader, orders: dict[int, list[Any]] | None, skip_mismatch: bool):
        self.reader, self.orders, self.skip_mismatch = reader, orders or {}, skip_mismatch
        self.staged: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.visited: set[int] = set()

    def layer(self, layer: Any, path: str) -> None:
        from ..layers.layer import Layer

        if id(layer) in self.visited:
            return
        self.visited.add(id(layer))
        if _is_model(layer):
            self.own(layer, path)
            children = self.orders.get(id(layer)) or keras_layer_order(layer)
            for child, name in zip(children, _container_names(children)):
                self.layer(child, f"{path}/layers/{name}")
            return
        # Keras keeps a recurrent layer's weights on its cell; tapefit's LSTM/GRU/SimpleRNN on the layer.
        fused = type(layer).__name__ in _RNN_CLASSES and layer._weight_names and "cell" not in layer._modules
        self.own(layer, f"{path}/cell" if fused else path)
        for attr, child in sorted(
            layer._modules.items(), key=lambda kv: ("~" if kv[0].startswith("_") else "") + kv[0]
        ):
            if isinstance(child, Layer):
                self.layer(child, f"{path}/{self.attribute(path, attr)}")
            elif isinstance(child, (nn.ModuleList, nn.ModuleDict)):
                items = list(child.values()) if isinstance(child, nn.ModuleDict) else list(child)
                layers = [c for c in items if isinstance(c, Layer)]
                for sub, name in zip(layers, _container_names(layers)):
                    self.layer(sub, f"{path}/{self.attribute(path, attr)}/{name}")
            elif child is not None and any(True for _ in child.parameters()):
                raise KerasFormatError(
                    f"Layer {layer.name!r} holds a plain torch module ({type(child).__name__}) with weights; "
                    "Keras files cannot fill it."
                )

    def attribute(self, path: str, attr: str) -> str:
        """Keras names a sub-layer by its public property when it has one (``key_dense`` for
        ``_key_dense``); use whichever spelling the file has."""
        if (
            self.reader.get(f"{path}/{attr}") is None
            and self.reader.get(f"{path}/{attr.lstrip('_')}") is not None
        ):
            return attr.lstrip("_")
        return attr

    def own(self, layer: Any, path: str) -> None:
        weights = _own_weights(layer)
        arrays = self.reader.arrays(path)
        if arrays is None and not weights:
            return
        try:
            self.staged.extend(self.check(layer, weights, arrays, path))
        except KerasFormatError as e:
            if not self.skip_mismatch:
                raise
            warnings.warn(
                f"Skipping the weights of layer {layer.name!r} (skip_mismatch=True): {e}", stacklevel=4
            )

    def check(
        self, layer: Any, weights: list[tuple[str, torch.Tensor]], arrays: list[np.ndarray] | None, path: str
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if arrays is None:
            raise KerasFormatError(f"{self.reader.where}: no weights at {path!r} for layer {layer.name!r}.")
        if len(arrays) != len(weights):
            raise KerasFormatError(
                f"{self.reader.where}: layer {layer.name!r} has {len(weights)} weights, the file has "
                f"{len(arrays)} at {path!r}."
            )
        out = []
        for (attr, w), array in zip(weights, arrays):
            perm = layer._storage_perms.get(attr)
            keras_shape = tuple(w.permute(*np.argsort(perm).tolist()).shape) if perm else tuple(w.shape)
            if tuple(array.shape) != keras_shape:
                raise KerasFormatError(
                    f"{self.reader.where}: layer {layer.name!r} weight {attr!r} has shape {keras_shape}, the "
                    f"file has {tuple(array.shape)} at {path!r}."
                )
            t = torch.as_tensor(array)
            out.append((w, t.permute(*perm) if perm else t))
        return out


def stage_model_weights(
    model: Any, reader: H5Reader, orders: dict[int, list[Any]] | None = None, skip_mismatch: bool = False
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every (weight, value) pair for ``model`` from the file, checked; raises before anything is
    assigned when the file and the model differ (missing, extra or mis-shaped arrays), or with
    ``skip_mismatch`` leaves out the layers that differ, with a warning."""
    stager = _Stager(reader, orders, skip_mismatch)
    stager.layer(model, "")
    stored = [p for p in reader.datasets_under("") if not p.startswith("optimizer/")]
    left = sorted(set(stored) - reader.read)
    if left:
        message = (
            f"{reader.where}: the file holds weights the tapefit model has no place for: {left[:10]}"
            f"{' ...' if len(left) > 10 else ''}"
        )
        if not skip_mismatch:
            raise KerasFormatError(message)
        warnings.warn(message, stacklevel=3)
    return stager.staged


def assign(staged: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for w, value in staged:
            w.copy_(value.to(dtype=w.dtype, device=w.device))
