"""``DataParallel``: the strategy object, and the hooks ``fit`` / ``evaluate`` / ``predict`` call.

A script that trains on one process trains data-parallel, unchanged, under ``torchrun``: the
trainer asks :func:`strategy_for` for the strategy (``None`` on one process, so the
single-process path pays one environment check per call), then lets it place the model,
split the input, wrap the training forward in ``DistributedDataParallel`` and share random
states. Users who configure distribution in code create the strategy themselves::

    strategy = tapefit.distribute.DataParallel()
    with strategy.scope():
        model = make_model()
        model.compile(...)
    model.fit(x, y, batch_size=256)   # 256 is the global batch: 256 / world_size per rank
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from ..utils.random import join_input_stream, split_input_stream
from . import environment
from .sharding import BatchSharder, DistributedBatches, batch_rows, share_random_state

__all__ = ["DataParallel", "current_strategy", "strategy_for"]

_scopes: list[DataParallel] = []
_default: list[DataParallel] = []


class DataParallel:
    """Data-parallel training over every process of the job (``DistributedDataParallel``).

    Creating it joins the process group (see :func:`tapefit.distribute.initialize`). On one
    process it is valid and does nothing: rank 0 of 1.

    Args:
        backend: ``"nccl"``, ``"gloo"``, or ``None`` (NCCL with GPUs, gloo on CPUs).
        timeout: Seconds a collective waits for the other ranks before failing (default
            ``$TAPEFIT_DIST_TIMEOUT`` or 600).
        find_unused_parameters: Passed to DDP; needed when some trainable weights get no
            gradient in a step (costs a graph walk per step).
        broadcast_buffers: Copy rank 0's buffers (e.g. BatchNormalization statistics) to every
            rank at each training forward, as DDP does by default.

    Example:
        >>> strategy = DataParallel()          # one process: rank 0 of 1
        >>> strategy.num_replicas_in_sync, strategy.is_chief
        (1, True)
    """

    def __init__(
        self,
        backend: str | None = None,
        timeout: float | None = None,
        find_unused_parameters: bool = False,
        broadcast_buffers: bool = True,
    ) -> None:
        environment.initialize(backend, timeout)
        self.find_unused_parameters = find_unused_parameters
        self.broadcast_buffers = broadcast_buffers

    # ---- what custom loops use ------------------------------------------------------------
    @property
    def rank(self) -> int:
        return environment.rank()

    @property
    def world_size(self) -> int:
        return environment.world_size()

    @property
    def num_replicas_in_sync(self) -> int:
        """The number of processes training together (``tf.distribute``'s name)."""
        return environment.world_size()

    @property
    def is_chief(self) -> bool:
        return environment.is_chief()

    @property
    def device(self) -> torch.device:
        """This rank's device (``cuda:LOCAL_RANK`` or the CPU)."""
        return environment.device()

    @contextlib.contextmanager
    def scope(self) -> Iterator[DataParallel]:
        """Models compiled inside use this strategy in ``fit`` / ``evaluate`` / ``predict``."""
        _scopes.append(self)
        try:
            yield self
        finally:
            _scopes.remove(self)

    def distribute_dataset(self, data: Any, drop_remainder: bool = True) -> DistributedBatches:
        """This rank's piece of every global batch of ``data`` (see :func:`distribute_dataset`)."""
        return DistributedBatches(data, drop_remainder)

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` on this rank's device, in ``DistributedDataParallel`` (itself on one process).

        Use the wrapper's forward with ``loss.backward()`` loops; a ``GradientTape`` loop keeps
        the model unwrapped and averages gradients with :func:`all_reduce_gradients`.
        """
        self.prepare_model(model)
        if not environment.is_distributed():
            return model
        return self._ddp(model)

    # ---- what the trainer calls ---------------------------------------------------------
    def prepare_model(self, model: torch.nn.Module) -> None:
        """Move ``model`` to this rank's device if it was built elsewhere (e.g. on ``cuda:0``)."""
        target = environment.device()
        params = list(model.parameters())
        if params and params[0].device != target and target.type == "cuda":
            model.to(target)

    def shard_input(self, adapter: Any, training: bool) -> bool:
        """Make ``adapter`` yield this rank's piece of each global batch; returns whether it does.

        Evaluation and prediction data whose first batch has fewer rows than there are
        processes is left whole: every rank then handles every row and nothing is reduced
        (a rank given no rows could not take part in reducing metrics it never updated).
        """
        world = environment.world_size()
        batch_size = getattr(adapter, "batch_size", None)
        if training and batch_size is not None and batch_size % world:
            raise ValueError(
                f"batch_size={batch_size} is the global batch and must divide evenly among the "
                f"{world} processes (batch_size / {world} per process); use a multiple of {world}."
            )
        if not training:
            rows = batch_rows(adapter.peek())
            if rows is not None and rows < world:
                if environment.is_chief():
                    warnings.warn(
                        f"The first batch holds {rows} rows for {world} processes, so every process "
                        "evaluates or predicts on all the rows itself (same results, no speed-up). Use "
                        f"batches of at least {world} rows to split the work.",
                        stacklevel=4,
                    )
                return False
        adapter.sharder = BatchSharder(environment.rank(), world, drop_remainder=training)
        return True

    def begin_fit(self, model: torch.nn.Module, wrap_forward: bool) -> None:
        """Before the first step: same random states and weights on every rank, and DDP.

        The input pipeline then draws from a random stream that stays the same on every rank
        (same data order), and the model from one seeded per rank (different dropout masks).

        With ``wrap_forward`` (the default ``train_step``) the training forward runs through
        ``DistributedDataParallel``, which averages gradients while backward runs. Otherwise
        every rank starts from rank 0's weights and the optimizer averages the gradients.
        """
        share_random_state()
        split_input_stream(environment.rank())
        trainable = [p for p in model.parameters() if p.requires_grad]
        if wrap_forward and trainable:
            model.__dict__["_ddp_forward"] = self._ddp(model)
        else:
            broadcast_module_state(model)

    def end_fit(self, model: torch.nn.Module) -> None:
        model.__dict__.pop("_ddp_forward", None)
        join_input_stream()

    def _ddp(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        dev = environment.device()
        # torch 2.13 renamed broadcast_buffers (per-forward buffer sync) to forward_sync_buffers.
        renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
        buffers = {"forward_sync_buffers" if renamed else "broadcast_buffers": self.broadcast_buffers}
        return DistributedDataParallel(
            model,
            device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=self.find_unused_parameters,
            **buffers,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size})"


def broadcast_module_state(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``model``."""
    if not environment.is_distributed():
        return
    from .sharding import same_on_all_ranks

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.copy_(same_on_all_ranks(t.detach()))


def current_strategy() -> DataParallel | None:
    """The strategy whose ``scope()`` is active, or ``None``."""
    return _scopes[-1] if _scopes else None


def strategy_for(model: Any) -> DataParallel | None:
    """The strategy ``fit`` / ``evaluate`` / ``predict`` use for ``model``; ``None`` on one process.

    The one entered with ``scope()`` around ``compile``, else an active ``scope()``, else a
    default :class:`DataParallel` when the process was launched as one of several.
    """
    strategy = model.__dict__.get("_strategy") or current_strategy()
    if strategy is None:
        if not (environment.launched_distributed() or (dist.is_available() and dist.is_initialized())):
            return None
        if not _default:
            _default.append(DataParallel())
        strategy = _default[0]
    if not environment.is_distributed():
        return None
    return strategy
