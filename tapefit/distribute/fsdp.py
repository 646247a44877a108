"""``FSDP``: fully sharded data parallel with torch's ``fully_shard`` (FSDP2).

Each rank keeps 1/world of every sharded layer's weights, gradients and optimizer state; a
layer's full weights are gathered just for its forward and backward. Checkpoints hold the
*full* weights (gathered on save), so a file saved on 8 GPUs loads on 1, 2 or 16:
:func:`full_state_dict` / :func:`load_full_state_dict`, or ``model.save_weights`` /
``model.load_weights`` (called on every rank) for ``.weights.safetensors`` files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from ..utils.random import split_input_stream
from . import environment
from .checkpointing import assign_full, full_tensors
from .sharding import share_random_state
from .strategy import DataParallel, broadcast_module_state

__all__ = ["FSDP", "full_state_dict", "load_full_state_dict"]


def _fully_shard() -> Callable[..., Any]:
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        raise RuntimeError(
            f"tapefit.distribute.FSDP needs torch.distributed.fsdp.fully_shard (torch >= 2.6); this is "
            f"torch {torch.__version__}. Upgrade torch, or use tapefit.distribute.DataParallel."
        ) from None
    return fully_shard


def _is_sharded(module: torch.nn.Module) -> bool:
    return type(module).__name__.startswith("FSDP") or any(
        type(m).__name__.startswith("FSDP") for m in module.modules()
    )


def _default_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's direct sub-layers that have trainable weights (looking inside layer lists)."""
    units = []
    stack = list(model.children())[::-1]
    while stack:
        child = stack.pop()
        if isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)):
            stack.extend(list(child.children())[::-1])
        elif any(p.requires_grad for p in child.parameters()):
            units.append(child)
    return units


class FSDP(DataParallel):
    """Fully sharded data parallel (torch's ``fully_shard``) for models too big for one device.

    ``fit`` shards the model when training starts: each layer chosen by ``shard_layers``
    becomes one FSDP unit (its weights gathered together), then the whole model. The optimizer
    then holds only this rank's shard of its state.

    Args:
        shard_layers: Which sub-modules become units: a list of layer classes, a predicate
            ``module -> bool``, or ``None`` for each direct sub-layer that has weights.
        reshard_after_forward: Free the gathered weights after each forward (less memory, one
            more all-gather in backward), as ``fully_shard`` does by default.
        backend, timeout: As for :class:`DataParallel`.

    Example (under ``torchrun``)::

        strategy = tapefit.distribute.FSDP()
        with strategy.scope():
            model = make_model()
            model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, batch_size=64)
        strategy.save_weights(model, "model.weights.safetensors")   # every rank calls it
    """

    def __init__(
        self,
        shard_layers: Any = None,
        reshard_after_forward: bool = True,
        backend: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self._shard = _fully_shard()
        super().__init__(backend=backend, timeout=timeout)
        self.shard_layers = shard_layers
        self.reshard_after_forward = reshard_after_forward

    def _units(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        chosen = self.shard_layers
        if chosen is None:
            return _default_units(model)
        if callable(chosen) and not isinstance(chosen, type):
            test = chosen
        else:
            classes = tuple(chosen) if isinstance(chosen, (list, tuple)) else (chosen,)
            test = lambda m: isinstance(m, classes)  # noqa: E731
        return [m for m in model.modules() if m is not model and test(m)]

    def shard_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Shard ``model`` in place (once; rank 0's weights first copied to every rank) and return it."""
        self.prepare_model(model)
        if not environment.is_distributed() or _is_sharded(model):
            return model
        broadcast_module_state(model)
        for unit in reversed(self._units(model)):  # innermost first, as fully_shard requires
            self._shard(unit, reshard_after_forward=self.reshard_after_forward)
        self._shard(model, reshard_after_forward=self.reshard_after_forward)
        _forget_weight_caches(model)
        return model

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Shard ``model`` (see :meth:`shard_model`); its own forward then gathers the weights."""
        return self.shard_model(model)

    def shard_input(self, adapter: Any, training: bool) -> bool:
        sharded = super().shard_input(adapter, training)
        if sharded:
            adapter.sharder.forbid_empty = True  # every rank must run every forward: it gathers weights
        return sharded

    def begin_fit(self, model: torch.nn.Module, wrap_forward: bool) -> None:
        share_random_state()
        split_input_stream(environment.rank())
        optimizer = getattr(model, "optimizer", None)
        if getattr(optimizer, "built", False) and not _is_sharded(model):
            raise RuntimeError(
                "FSDP must shard the model before its optimizer is built: call fit() on a freshly "
                "compiled model (or shard it first with strategy.shard_model(model))."
            )
        self.shard_model(model)

    def save_weights(self, model: torch.nn.Module, filepath: str | os.PathLike) -> None:
        """``model.save_weights(filepath)``: the full weights, written by rank 0; all ranks call it."""
        from ..saving.weights import save_weights

        save_weights(model, filepath)

    def load_weights(self, model: torch.nn.Module, filepath: str | os.PathLike) -> None:
        """Load full weights (saved on any number of ranks) into the sharded ``model``; all ranks call it."""
        from ..saving.weights import read_state_file

        load_full_state_dict(model, read_state_file(os.fspath(filepath)))


def _forget_weight_caches(model: torch.nn.Module) -> None:
    """fully_shard replaces parameters with sharded ones: drop lists of the old ones."""
    for m in model.modules():
        m.__dict__.pop("_weights_cache", None)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's full (unsharded) state on the CPU; a collective when the model is sharded.

    Every rank must call it under FSDP; on a plain model it is a CPU copy of ``model.state_dict()``.
    """
    return full_tensors(model.state_dict())


def load_full_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full state dict into ``model``, sharding it when ``model`` is sharded (any world size).

    Names and shapes are checked first; nothing is loaded on a mismatch. Every rank must call it
    under FSDP (each entry is scattered in the model's order).
    """
    own = full_shapes(model)
    problems = [f"missing: {k}" for k in own if k not in state]
    problems += [f"unexpected: {k}" for k in state if k not in own]
    problems += [
        f"{k}: model {own[k]} vs file {tuple(v.shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != own[k]
    ]
    if problems:
        raise ValueError("The state does not fit the model (nothing loaded):\n  " + "\n  ".join(problems))
    targets = model.state_dict()
    for k in own:
        assign_full(targets[k], state[k])


def full_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Each state entry's full (unsharded) shape."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
