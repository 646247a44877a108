"""The functional graph: ``Model(inputs, outputs)`` built from ``Input`` and layer calls.

Owns walking the recorded ``Node``s from the outputs back to the inputs, ordering them, and
running them on real tensors. The ordered run plan is computed once at construction, so a
forward pass is one loop over (layer, argument slots) with intermediate values freed as soon
as their last consumer has run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._masking import flat, keep_mask
from ..layers.layer import Layer
from ..layers.symbolic import InputLayer, KerasTensor, Node, _flatten, map_structure

__all__ = ["GraphPlan", "build_graph"]


class GraphPlan:
    """The nodes between ``inputs`` and ``outputs`` in execution order, with value slots."""

    def __init__(self, inputs: Any, outputs: Any):
        self.inputs = inputs
        self.outputs = outputs
        self.input_tensors = _flatten(inputs)
        self.output_tensors = _flatten(outputs)
        for t in self.input_tensors + self.output_tensors:
            if not isinstance(t, KerasTensor) or t._keras_history is None:
                raise ValueError(
                    "Model(inputs, outputs) needs symbolic tensors: inputs from tapefit.Input(...) "
                    f"and outputs from layers called on them; got {type(t).__name__}."
                )
        for t in self.input_tensors:
            if not isinstance(t._keras_history[0], InputLayer):
                raise ValueError(
                    f"Model inputs must come straight from tapefit.Input(); {t.name!r} is the output "
                    f"of layer {t._keras_history[0].name!r}."
                )
        self.input_dtypes = [t.dtype for t in self.input_tensors]
        self.nodes = self._order_nodes()
        self.layers = self._ordered_layers()
        self._compile_plan()

    def _order_nodes(self) -> list[Node]:
        input_ids = {id(t) for t in self.input_tensors}
        order: list[Node] = []
        state: dict[int, int] = {}

        def visit(node: Node) -> None:
            if state.get(id(node)) == 2:
                return
            if state.get(id(node)) == 1:
                raise ValueError("The layer graph has a cycle.")
            state[id(node)] = 1
            for t in node.input_tensors:
                if id(t) in input_ids:
                    continue
                layer, idx, _ = t._keras_history
                if isinstance(layer, InputLayer):
                    raise ValueError(
                        f"The outputs depend on input {t.name!r}, which is not among the model's "
                        "inputs: pass every Input the outputs need to Model(inputs=...)."
                    )
                visit(layer._inbound_nodes[idx])
            state[id(node)] = 2
            order.append(node)

        for t in self.output_tensors:
            layer, idx, _ = t._keras_history
            if not isinstance(layer, InputLayer):
                visit(layer._inbound_nodes[idx])
        return order

    def _ordered_layers(self) -> list[Layer]:
        seen: dict[int, Layer] = {}
        for t in self.input_tensors:
            seen.setdefault(id(t._keras_history[0]), t._keras_history[0])
        for node in self.nodes:
            seen.setdefault(id(node.layer), node.layer)
        names: dict[str, Layer] = {}
        for layer in seen.values():
            if layer.name in names and names[layer.name] is not layer:
                raise ValueError(
                    f"Two different layers in the model are named {layer.name!r}: layer names in a "
                    "model must be unique."
                )
            names[layer.name] = layer
        return list(seen.values())

    def _compile_plan(self) -> None:
        slot: dict[int, int] = {id(t): i for i, t in enumerate(self.input_tensors)}
        steps = []
        for node in self.nodes:
            for t in node.output_tensors:
                slot.setdefault(id(t), len(slot))
            steps.append(node)
        self.n_slots = len(slot)
        self._slot = slot
        last_use: dict[int, int] = {}
        for i, node in enumerate(steps):
            for t in node.input_tensors:
                last_use[slot[id(t)]] = i
        keep = {slot[id(t)] for t in self.output_tensors}
        self.plan = []
        for i, node in enumerate(steps):
            free = [s for s, last in last_use.items() if last == i and s not in keep]
            out_slots = [slot[id(t)] for t in node.output_tensors]
            # The usual node, ``layer(one_tensor)``, reads its input straight from a slot.
            single = (
                slot[id(node.args[0])]
                if len(node.args) == 1 and isinstance(node.args[0], KerasTensor) and not node.kwargs
                else None
            )
            self.plan.append((node, out_slots, free, single))

    def __getstate__(self) -> dict[str, Any]:
        """The state to pickle or deep-copy: the value slots, keyed by ``id()``, travel as
        (tensor, slot) pairs and are re-keyed on load."""
        state = dict(self.__dict__)
        state["_slot"] = self._slot_tensors()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._slot = {id(t): s for t, s in state["_slot"]}

    def _slot_tensors(self) -> list[tuple[KerasTensor, int]]:
        tensors = self.input_tensors + [t for node in self.nodes for t in node.output_tensors]
        return [(t, self._slot[id(t)]) for t in tensors if id(t) in self._slot]

    def run(self, flat_inputs: list[torch.Tensor]) -> Any:
        values: list[Any] = [None] * self.n_slots
        values[: len(flat_inputs)] = flat_inputs
        for i, dtype in enumerate(self.input_dtypes):  # Keras converts inputs to the Inputs' dtypes
            v = values[i]
            if isinstance(v, torch.Tensor) and v.dtype is not dtype:
                values[i] = keep_mask(v, v.to(dtype))
        slot = self._slot
        for node, out_slots, free, single in self.plan:
            if single is not None:
                out = node.layer(values[single])
            else:
                lookup = lambda t: values[slot[id(t)]] if isinstance(t, KerasTensor) else t  # noqa: E731
                out = node.layer(*map_structure(lookup, node.args), **map_structure(lookup, node.kwargs))
            if len(out_slots) == 1:
                values[out_slots[0]] = out if isinstance(out, torch.Tensor) else flat(out)[0]
            else:
                for s, v in zip(out_slots, flat(out)):
                    values[s] = v
            for s in free:
                values[s] = None
        return map_structure(lambda t: values[slot[id(t)]], self.outputs)


def build_graph(model: Layer, inputs: Any, outputs: Any) -> GraphPlan:
    """Attach the graph to ``model``: its layers become submodules in graph order.

    Positional keys (not the auto-generated names, which depend on what else the process built)
    keep state-dict keys identical for the same architecture.
    """
    plan = GraphPlan(inputs, outputs)
    model._graph = plan
    model._graph_layers = nn.ModuleList(plan.layers)
    model.built = True
    return plan
