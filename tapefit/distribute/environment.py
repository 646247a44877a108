"""The process group: which rank this is, how many there are, and joining the group.

``torchrun`` (and other launchers: SLURM via torchrun, ``torch.multiprocessing``) describes the
job in environment variables: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. :func:`initialize` reads them, puts this process on its own device
(``cuda:LOCAL_RANK``, or the CPU), and joins the group with NCCL on GPUs or gloo on CPUs, with a
timeout on every collective so that no rank waits forever for one that died.

This module is the only place that starts or inspects the process group; everything here is
cheap enough to call on any path (no collective, no device work) except :func:`initialize` and
:func:`barrier`.
"""

from __future__ import annotations

import atexit
import os
from datetime import timedelta

import torch
import torch.distributed as dist

from .. import config

__all__ = [
    "initialize",
    "is_distributed",
    "launched_distributed",
    "rank",
    "world_size",
    "local_rank",
    "is_chief",
    "device",
    "barrier",
    "timeout_seconds",
]

_DEFAULT_TIMEOUT_S = 600.0
_TIMEOUT_ENV = "TAPEFIT_DIST_TIMEOUT"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"The environment variable {name}={value!r} must be an integer.") from None


def launched_distributed() -> bool:
    """Whether a launcher started this process as one of several (``WORLD_SIZE`` > 1)."""
    return _env_int("WORLD_SIZE", 1) > 1


def is_distributed() -> bool:
    """Whether a process group with more than one rank is active in this process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 on one process); read from the group, else from ``RANK``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def world_size() -> int:
    """The number of processes in the job (1 on one process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """This process's index on its node (``LOCAL_RANK``; 0 on one process)."""
    return _env_int("LOCAL_RANK", 0)


def is_chief() -> bool:
    """Whether this process prints and writes files: rank 0, or the only process."""
    return rank() == 0


def device() -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        index = local_rank()
        if index >= count:
            raise RuntimeError(
                f"LOCAL_RANK={index} but this node has {count} GPU(s): launch at most {count} processes "
                f"per node (torchrun --nproc_per_node={count})."
            )
        return torch.device("cuda", index)
    return torch.device("cpu")


def timeout_seconds(timeout: float | None = None) -> float:
    """The collective timeout: ``timeout``, else ``$TAPEFIT_DIST_TIMEOUT``, else 600 s."""
    if timeout is None:
        raw = os.environ.get(_TIMEOUT_ENV)
        try:
            timeout = float(raw) if raw else _DEFAULT_TIMEOUT_S
        except ValueError:
            raise ValueError(f"{_TIMEOUT_ENV}={raw!r} must be a number of seconds.") from None
    if timeout <= 0:
        raise ValueError(f"The collective timeout must be a positive number of seconds, got {timeout}.")
    return float(timeout)


def initialize(backend: str | None = None, timeout: float | None = None) -> bool:
    """Join the process group the launcher describes; returns whether the run is distributed.

    Does nothing when the group already exists (yours, or from an earlier call) or when the
    process was not launched as one of several. Otherwise it selects this rank's device
    (``cuda:LOCAL_RANK``, making it tapefit's default device), then initialises the group:
    ``backend`` defaults to NCCL with GPUs and gloo on CPUs.

    Args:
        backend: ``"nccl"``, ``"gloo"`` or ``None`` for the default.
        timeout: Seconds a collective may wait for the other ranks before it fails (default:
            ``$TAPEFIT_DIST_TIMEOUT``, else 600). It bounds how long the survivors of a crashed
            rank wait; make it longer than your slowest step, checkpoint save or evaluation.
    """
    if not dist.is_available():
        if launched_distributed():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support.")
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched_distributed():
        return False
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: launch the script with torchrun "
            "(e.g. `torchrun --nproc_per_node=2 train.py`), which sets all of them."
        )
    dev = device()
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        config.set_device(dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    dist.init_process_group(
        backend,
        timeout=timedelta(seconds=timeout_seconds(timeout)),
        device_id=dev if backend == "nccl" else None,
    )
    from .failures import install_failure_report

    install_failure_report()
    atexit.register(_leave_group)
    return True


def _leave_group() -> None:
    """At a normal exit, tear down the group :func:`initialize` made, as torch asks programs to.

    Left to the interpreter's finalization, gloo's threads can still hold work whose tensors
    need the GIL, and the process aborts ("terminate called without an active exception").
    After an error it is left alone: a rank still waiting in a collective could make the
    teardown hang.
    """
    from .failures import exiting_cleanly

    if dist.is_initialized() and exiting_cleanly():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (does nothing on one process)."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
