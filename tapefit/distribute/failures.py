"""When a rank fails: say which one, on every rank, and let no rank wait forever.

The rank whose code raises first writes ``"rank R failed: <error>"`` into the process group's
key-value store (the first report wins; a rank that catches its error and calls ``fit`` or
another guarded function again takes its report back), prints it, and records it in torchrun's error file
so the launcher's summary shows it as the root cause. The other ranks are then stuck in, or
soon reach, a collective that cannot complete: it fails when the dead rank's connections close
(gloo), when torchrun stops them, or at the latest after the collective timeout. They look up
the report and raise :class:`RankFailedError` naming the failing rank instead of a bare
"connection closed" or "timeout" error.

``fit``, ``evaluate`` and ``predict`` run under :func:`guard`; custom loops get the same through
the ``sys.excepthook`` installed when the group is initialised.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import torch.distributed as dist

from .environment import is_distributed, rank, timeout_seconds

__all__ = ["RankFailedError", "guard", "report_failure", "failure_reported_by_another_rank"]

_KEY = "tapefit/first_failure"
_reported: str | None = None  # this rank's report still in the store
_hook_installed = False
_uncaught = False  # an exception escaped the program

F = TypeVar("F", bound=Callable[..., Any])


class RankFailedError(RuntimeError):
    """Raised on a rank that stopped because another rank failed (the message names it)."""


def _store() -> Any:
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except Exception:  # the store is gone with its host, or the group was never made
        return None


def failure_reported_by_another_rank() -> str | None:
    """The first failure another rank reported (``"rank R failed: ..."``), or ``None``."""
    store = _store()
    if store is None:
        return None
    try:
        if not store.check([_KEY]):
            return None
        message = store.get(_KEY).decode("utf-8", "replace")
    except Exception:
        return None
    return None if not message or message.startswith(f"rank {rank()} ") else message


def report_failure(error: BaseException) -> None:
    """Publish this rank's failure (once) to the other ranks, to stderr and to torchrun."""
    global _reported
    if _reported is not None:
        return
    message = _reported = f"rank {rank()} failed: {type(error).__name__}: {error}"
    store = _store()
    if store is not None:
        try:
            store.compare_set(_KEY, "", message)
        except Exception:
            pass  # the store's host is gone; the launcher still reports the exit code
    sys.stderr.write(f"tapefit.distribute: {message}\n")
    sys.stderr.flush()
    if os.environ.get("TORCHELASTIC_ERROR_FILE") and isinstance(error, Exception):
        try:
            from torch.distributed.elastic.multiprocessing.errors import get_error_handler

            get_error_handler().record_exception(error)
        except Exception:
            pass


_COMMUNICATION_WORDS = ("timed out", "connection closed", "connection reset", "broken pipe")


def withdraw_report() -> None:
    """Take back this rank's report: it caught the error and went on, so the error is no
    longer a reason for the others to stop, and must not be blamed for a later failure."""
    global _reported
    if _reported is None:
        return
    message, _reported = _reported, None
    store = _store()
    if store is not None:
        try:
            store.compare_set(_KEY, message, "")
        except Exception:
            pass


def _is_communication_failure(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, dist.DistError) or any(w in text for w in _COMMUNICATION_WORDS)


def _explain(error: BaseException) -> BaseException:
    """The error to raise on this rank: its own error (reported to the others), or, when a
    collective failed, a RankFailedError naming the rank that failed first."""
    if not _is_communication_failure(error):
        report_failure(error)
        return error
    other = failure_reported_by_another_rank()
    if other is not None:
        return RankFailedError(
            f"rank {rank()} stopped because {other} (this rank then got {type(error).__name__}: {error})"
        )
    report = RankFailedError(
        f"rank {rank()}: a collective operation with the other ranks failed ({error}). No other rank's "
        "report could be read: one was probably killed (out of memory, a signal), is stuck, or is "
        "rank 0, which holds the reports when the job was not started by torchrun. Collectives "
        f"give up after {timeout_seconds():.0f} s (tapefit.distribute.initialize(timeout=...) or "
        "$TAPEFIT_DIST_TIMEOUT)."
    )
    report_failure(report)
    return report


def guard(fn: F) -> F:
    """Run ``fn``; if it raises while distributed, report or explain the failure (see module doc)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        withdraw_report()  # a rank that calls again caught its last error
        try:
            return fn(*args, **kwargs)
        except BaseException as error:
            if not is_distributed() or isinstance(error, RankFailedError):  # the latter: explained already
                raise
            explained = _explain(error)
            if explained is error:
                raise
            raise explained from error

    return wrapper  # type: ignore[return-value]


def install_failure_report() -> None:
    """Report uncaught exceptions of custom loops the way :func:`guard` does (idempotent)."""
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        global _uncaught
        _uncaught = True
        if is_distributed() and not isinstance(value, RankFailedError):
            other = failure_reported_by_another_rank() if _is_communication_failure(value) else None
            if other is not None:
                sys.stderr.write(f"tapefit.distribute: rank {rank()} stopped because {other}\n")
            else:
                report_failure(value)
        previous(kind, value, tb)

    sys.excepthook = hook


def exiting_cleanly() -> bool:
    """No exception escaped the program and no failure of this rank is still reported: the
    other ranks are not waiting on this one, so the group can be torn down."""
    return not _uncaught and _reported is None
