"""Keras ops in a functional graph (``x + y``, ``x[:, 0]``, the ``not_equal`` behind a padding mask)
and what they become in tapefit: ``TensorOp`` layers, or nothing where tapefit computes the same
mask itself. Anything else is refused by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["KerasFormatError", "MASK_OPS", "implied_masks", "tensor_source", "translate_op"]

BINARY_OPS = {
    "Add": "add",
    "Subtract": "sub",
    "Multiply": "mul",
    "Divide": "truediv",
    "TrueDivide": "truediv",
    "Power": "pow",
    "Matmul": "matmul",
}
MASK_OPS = ("NotEqual", "Any")


class KerasFormatError(ValueError):
    """A Keras file asks for something tapefit cannot rebuild exactly (nothing was loaded)."""


def translate_op(
    e: dict[str, Any], nodes: list[dict[str, Any]], encode: Callable[[Any], Any]
) -> dict[str, Any]:
    """A Keras op node as a ``TensorOp`` layer (the arithmetic and indexing tapefit has)."""
    kind, name = e["class_name"], e["name"]
    extra = {k: v for k, v in (e.get("config") or {}).items() if k != "name"}
    if len(nodes) != 1 or extra or (kind not in BINARY_OPS and kind not in ("Negative", "GetItem")):
        raise KerasFormatError(
            f"Keras op {name!r} ({kind}{', ' + str(extra) if extra else ''}) has no tapefit equivalent; "
            "tapefit rebuilds + - * / ** @, negation and indexing of symbolic tensors. Use a layer "
            "instead (e.g. layers.Concatenate for ops.concatenate)."
        )
    args = nodes[0].get("args", [])
    tensors = [a for a in args if tensor_source(a) is not None]
    config: dict[str, Any] = {"name": name}
    if kind == "Negative" and len(args) == len(tensors) == 1:
        config["op"], call = "neg", tensors[0]
    elif kind == "GetItem" and len(args) == 2 and tensor_source(args[0]) is not None:
        config["op"], config["operand"], call = "getitem", _index_key(args[1], e), args[0]
    elif kind in ("Negative", "GetItem"):
        raise KerasFormatError(f"Keras op {name!r} ({kind}) is called with unsupported arguments {args!r}.")
    elif len(tensors) == 2 == len(args):
        config["op"], call = BINARY_OPS[kind], args
    elif len(tensors) == 1 and len(args) == 2 and isinstance(args[1 - args.index(tensors[0])], (int, float)):
        scalar_first = args.index(tensors[0]) == 1
        config.update(op=BINARY_OPS[kind], operand=args[0 if scalar_first else 1], reverse=scalar_first)
        call = tensors[0]
    else:
        raise KerasFormatError(f"Keras op {name!r} ({kind}) is called with unsupported arguments {args!r}.")
    return {
        "class_name": "TensorOp",
        "config": config,
        "name": name,
        "inbound_nodes": [{"args": encode([call]), "kwargs": {}}],
    }


def tensor_source(value: Any) -> tuple | None:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return tuple(value["config"]["keras_history"])
    return None


def _producers(value: Any) -> list[str]:
    """The names of the layers and ops whose outputs a serialized call argument uses."""
    source = tensor_source(value)
    if source is not None:
        return [source[0]]
    if isinstance(value, dict):
        return [p for v in value.values() for p in _producers(v)]
    if isinstance(value, list):
        return [p for v in value for p in _producers(v)]
    return []


def _spec_names(spec: Any) -> list[str]:
    """The layer names in a functional ``output_layers`` spec (``[name, node, tensor]`` triples)."""
    if isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[1], int):
        return [spec[0]]
    if isinstance(spec, dict):
        spec = list(spec.values())
    return [n for s in spec for n in _spec_names(s)] if isinstance(spec, list) else []


def _mask_roots(entries: list[dict[str, Any]], ops: dict[str, dict[str, Any]]) -> set[str]:
    """The ops that are exactly the padding mask of an ``Embedding(mask_zero=True)``
    (``not_equal(x, 0)``) or of a ``Masking`` layer (``any(not_equal(x, v), axis=-1)``) on ``x``."""
    embedded, masked = set(), set()
    for e in entries:
        config = e.get("config") or {}
        for node in e.get("inbound_nodes", []):
            source = tensor_source(node["args"][0]) if isinstance(node, dict) and node.get("args") else None
            if e.get("class_name") == "Embedding" and config.get("mask_zero"):
                embedded.add(source)
            elif e.get("class_name") == "Masking":
                masked.add((source, config.get("mask_value", 0.0)))
    not_equal = {}
    for name, e in ops.items():
        nodes = e.get("inbound_nodes", [])
        args = nodes[0].get("args", []) if len(nodes) == 1 else []
        if e["class_name"] == "NotEqual" and len(args) == 2 and isinstance(args[1], (int, float)):
            not_equal[name] = (tensor_source(args[0]), args[1])
    roots = {n for n, (src, v) in not_equal.items() if src in embedded and v == 0}
    for name, e in ops.items():
        nodes = e.get("inbound_nodes", [])
        config = {k: v for k, v in (e.get("config") or {}).items() if k != "name"}
        if e["class_name"] != "Any" or len(nodes) != 1 or config != {"axis": -1, "keepdims": False}:
            continue
        source = _producers(nodes[0].get("args", [])[:1])
        if source and source[0] in not_equal and not_equal[source[0]] in masked:
            roots.add(name)
    return roots


def implied_masks(entries: list[dict[str, Any]], ops: dict[str, dict[str, Any]], outputs: Any) -> set[str]:
    """The Keras ops that only compute padding masks, which tapefit carries on tensors itself.

    Keras records ``mask=`` on every layer call that receives a masked tensor, pointing at the ops
    that computed the mask: ``Embedding(mask_zero=True)``'s ``not_equal``, ``Masking``'s ``any``,
    and the ops of later layers' ``compute_mask`` (``Concatenate``'s ``expand_dims``, ``ones_like``
    ...). Such an op group is dropped only when it starts from one of those layers' own masks and
    its results feed nothing but ``mask`` arguments of layers.
    """
    roots = _mask_roots(entries, ops)
    uses: dict[str, set[str]] = {}
    for e in entries:
        for node in [n for n in e.get("inbound_nodes", []) if isinstance(n, dict)]:
            for producer in _producers(node.get("args", [])):
                uses.setdefault(producer, set()).add(e["name"])
            for key, value in node.get("kwargs", {}).items():
                as_mask = key.endswith("mask") and e["name"] not in ops
                for producer in _producers(value):
                    uses.setdefault(producer, set()).add("<mask>" if as_mask else e["name"])
    for producer in _spec_names(outputs):
        uses.setdefault(producer, set()).add("<output>")
    starts = {p for p, users in uses.items() if p in ops and "<mask>" in users}

    def upstream(start: str, within: Any) -> set[str]:
        group, stack = set(), [start]
        while stack:
            name = stack.pop()
            if name not in group and name in within:
                group.add(name)
                for node in ops[name].get("inbound_nodes", []):
                    stack.extend(_producers([node.get("args", []), node.get("kwargs", {})]))
        return group

    mask_only = set().union(*(upstream(s, ops) for s in starts)) if starts else set()
    while bad := {
        op for op in mask_only if any(u not in mask_only and u != "<mask>" for u in uses.get(op, ()))
    }:
        mask_only -= bad
    implied: set[str] = set()
    for start in starts & mask_only:
        group = upstream(start, mask_only)
        if group & roots:
            implied |= group
    return implied


def _index_key(key: Any, owner: dict[str, Any]) -> Any:
    """Keras's serialized index -> ``TensorOp``'s encoded key (a list is a tuple, as Keras reads it)."""
    if isinstance(key, list):
        return {"tuple": [_index_key(k, owner) for k in key]}
    if key is None or (isinstance(key, int) and not isinstance(key, bool)):
        return key
    if isinstance(key, dict) and key.get("class_name") == "__slice__":
        c = key["config"]
        return {"slice": [c.get("start"), c.get("stop"), c.get("step")]}
    if isinstance(key, dict) and key.get("class_name") == "__ellipsis__":
        return {"ellipsis": True}
    if isinstance(key, dict) and key.get("class_name") == "__tuple__":
        return {"tuple": [_index_key(k, owner) for k in key["config"]["value"]]}
    raise KerasFormatError(
        f"Keras op {owner.get('name')!r} indexes with {key!r}, which tapefit cannot rebuild."
    )
