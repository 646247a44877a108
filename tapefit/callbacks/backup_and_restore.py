"""`BackupAndRestore`: resume an interrupted `fit` exactly where the last backup was taken.

A backup is one safetensors file: the model's and the optimizer's full states, and for each
process its random states, metric states and the epoch's log accumulators; its metadata field
holds JSON (epoch and step, versions, the other callbacks' states, the History so far). With
``save_freq=N`` a backup is taken every N batches and `fit` resumes at that step: it replays the
epoch's start (random states, data order), skips the batches already done and continues with
the random streams of the moment of the backup, so the weights come out bit for bit as in a
run that was never interrupted (on CPU; for arrays, tensors, Datasets and DataLoaders, random
``map`` functions included, as long as they draw in the training thread: a ``map`` with
``num_parallel_calls`` > 1 draws on threads in no fixed order, so it is not reproducible even
without an interruption).

A backup counts once it is *published*: its file is written atomically, then (after a barrier
when several processes train) the index ``backup-index.json`` naming it is written atomically,
last. A crash at any moment leaves the index naming the last complete backup; files it does not
name are removed. The backup before is kept as a fallback, and neither is deleted unless
training ran to its last epoch without a stop: a NaN, an early stop or an error keeps them.

In a distributed job only rank 0 reads and writes the folder: it gathers the other ranks'
states into the file and sends them what it read, so the folder need not be shared.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import warnings
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from .._atomic import atomic_write, clean_stale_temporaries
from ..distribute import checkpointing, environment
from ..utils.random import get_rng_state, rng_state_from_tensors, rng_state_to_tensors, set_rng_state
from ._compile_signature import compile_signature, differences
from .callback import Callback, _is_chief, _to_float

__all__ = ["BackupAndRestore"]

_FORMAT = "tapefit.backup"
_INDEX = "backup-index.json"
_INDEX_FORMAT = "tapefit.backup-index"
_FILE = re.compile(r"backup-e\d+-b\d+\.safetensors\Z")


class _Unreadable(Exception):
    """A backup file that is missing, truncated or not ours."""


def _cpu_copy(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"BackupAndRestore: state entry {name!r} is a {type(value).__name__}, not a tensor.")
    return checkpointing.full_tensor(value)


def _tapefit_version() -> str:
    from .. import __version__

    return __version__


def _under(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class BackupAndRestore(Callback):
    """Back up the training state at each epoch's end and restore it when `fit` starts again.

    Restart the same script after a crash or a kill: `fit` resumes at the epoch after the
    last backup (or, with ``save_freq=N``, at the batch after it), with the model, the
    optimizer (moments, iterations), the metrics, the random states (Python, numpy, torch) and
    the other callbacks' states as they were then. `fit` reads :attr:`initial_epoch` after
    ``on_train_begin``.

    If the newest backup is unreadable, the previous one is used with a warning naming the
    file; if none is usable an error says so (training never silently starts from scratch).
    A backup whose names or shapes differ from the model raises an error listing them.

    Args:
        backup_dir: Folder for the backup files (created if needed; other files in it are
            left alone).
        save_freq: ``"epoch"``, or an int N: also back up every N training batches, and resume
            at that batch.
        double_checkpoint: Keep the previous backup as a fallback (recommended).
        delete_checkpoint: Delete the backups when `fit` completes all its epochs. They are
            kept after any early stop (NaN, EarlyStopping, ``stop_training``) or error.

    Attributes:
        initial_epoch: The epoch to resume at (0 when nothing was restored).
    """

    def __init__(
        self,
        backup_dir: str | os.PathLike,
        save_freq: str | int = "epoch",
        double_checkpoint: bool = True,
        delete_checkpoint: bool = True,
    ) -> None:
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and not (
            isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq > 0
        ):
            raise ValueError(
                f"BackupAndRestore: save_freq must be 'epoch' or a positive int, got {save_freq!r}."
            )
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        self._index = os.path.join(self.backup_dir, _INDEX)
        self._published: str | None = None  # the file the index names as the latest
        self._compile_signature: dict[str, Any] = {}
        self.initial_epoch = 0
        self._last_completed: int | None = None
        self._unhealthy = False
        self._batches = 0
        self._pending: dict[str, Any] | None = None
        if save_freq == "epoch":  # no batch hook at all, so fit() pays nothing per step for it
            self.on_train_batch_end = Callback.on_train_batch_end.__get__(self)  # type: ignore[method-assign]

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._batches += 1
        state = getattr(self.model, "_fit_state", None)
        if self._batches % self.save_freq == 0 and state is not None:
            self._save(state.epoch, mid_epoch=state)

    # ---- restoring -------------------------------------------------------------------

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.initial_epoch = 0
        self._last_completed = None
        self._unhealthy = False
        self._compile_signature = compile_signature(self.model)
        found: tuple[str, dict[str, Any], dict[str, torch.Tensor]] | None = None
        error = None
        if _is_chief():
            try:
                found = self._find()
            except RuntimeError as e:
                error = str(e)
        found, error = checkpointing.share_from_chief((found, error))
        if error is not None:
            raise RuntimeError(error)
        if found is None:
            return
        name, meta, tensors = found
        self._published = name
        self._apply(os.path.join(self.backup_dir, name), meta, tensors)
        self.initial_epoch = self._last_completed = int(meta["epoch"])

    def _find(self) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]] | None:
        """The newest readable published backup (rank 0), with warnings for the ones skipped."""
        clean_stale_temporaries(self.backup_dir)
        if not os.path.exists(self._index):
            unpublished = self._backup_files()
            if unpublished:
                warnings.warn(
                    f"BackupAndRestore: ignoring {', '.join(unpublished)} in {self.backup_dir}: no index "
                    f"({_INDEX}) names them, so the process stopped before any backup was complete; "
                    "training starts from the beginning.",
                    stacklevel=3,
                )
            return None
        try:
            with open(self._index) as f:
                index = json.load(f)
            if index.get("format") != _INDEX_FORMAT:
                raise ValueError("not a tapefit backup index")
            names = [index["latest"], index.get("previous")]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise RuntimeError(
                f"BackupAndRestore: the backup index {self._index} is unreadable ({e}). Refusing to "
                f"restart from scratch silently: delete {self.backup_dir} to start over."
            ) from e
        failures = []
        for name in (n for n in names if n):
            path = os.path.join(self.backup_dir, name)
            try:
                meta, tensors = self._read(path)
            except _Unreadable as e:
                warnings.warn(
                    f"BackupAndRestore: cannot read the backup {path} ({e}); trying an older one.",
                    stacklevel=3,
                )
                failures.append(f"{path}: {e}")
                continue
            return name, meta, tensors
        raise RuntimeError(
            f"BackupAndRestore: no backup in {self.backup_dir} could be read ({'; '.join(failures)}). "
            "Refusing to restart from scratch silently: delete the folder to start over."
        )

    def _backup_files(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.backup_dir) if _FILE.match(n))
        except FileNotFoundError:
            return []

    def _read(self, path: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        try:
            with safetensors.safe_open(path, framework="pt", device="cpu") as f:
                meta = json.loads((f.metadata() or {})["tapefit"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, KeyError, ValueError, safetensors.SafetensorError) as e:
            raise _Unreadable(f"{type(e).__name__}: {e}") from e
        if meta.get("format") != _FORMAT or "epoch" not in meta or "ranks" not in meta:
            raise _Unreadable("not a tapefit backup file")
        return meta, tensors

    def _apply(self, path: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        model_state = _under("model/", tensors)
        optimizer_state = _under("optimizer/", tensors)
        current = {k: v for k, v in self.model.state_dict().items() if isinstance(v, torch.Tensor)}
        problems = [
            f"missing from the backup: {k} {tuple(current[k].shape)}" for k in current if k not in model_state
        ]
        problems += [
            f"not in the model: {k} {tuple(v.shape)}" for k, v in model_state.items() if k not in current
        ]
        problems += [
            f"shape of {k}: backup {tuple(v.shape)}, model {tuple(current[k].shape)}"
            for k, v in model_state.items()
            if k in current and v.shape != current[k].shape
        ]
        if not problems and "compile" in meta:
            changed = differences(meta["compile"], self._compile_signature)
            if changed:
                raise ValueError(
                    f"BackupAndRestore: the backup {path} was taken with other compile() arguments; "
                    "nothing was loaded.\n  " + "\n  ".join(changed) + "\nCompile as the interrupted run "
                    f"did to resume it, or delete {self.backup_dir} to start over."
                )
        if problems:
            raise ValueError(
                f"BackupAndRestore: the backup {path} does not fit this model; nothing was loaded.\n  "
                + "\n  ".join(problems)
                + f"\nDelete {self.backup_dir} to start over with the new architecture."
            )
        rank, local_meta = self._local_part(path, meta)
        local = _under(f"ranks/{rank}/", tensors)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer_state and optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
        for k in current:
            checkpointing.assign_full(current[k], model_state[k])
        self._set_random_states(local_meta, local)
        if "fit" in local_meta and int(local_meta["fit"]["step"]) > 0:
            from ..trainers.fit_state import ResumePoint

            self.model._resume_point = ResumePoint.from_tensors(_under("fit/", local), local_meta["fit"])
            self._restore_metrics(local)
        best: dict[str, list[np.ndarray]] = {}
        for name in sorted(k for k in tensors if k.startswith("callbacks/")):
            key = name[len("callbacks/") :].split("/best_weights/")[0]
            best.setdefault(key, []).append(tensors[name].numpy())
        self._pending = {
            "callbacks": meta.get("callbacks", {}),
            "history": meta.get("history"),
            "best_weights": best,
        }

    def _local_part(self, path: str, meta: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Which process's states this rank takes: its own, or rank 0's at an epoch boundary.

        Every rank holds the same random states at an epoch's end, so such a backup resumes on
        any number of processes; a mid-epoch one holds per-process metric and log accumulators.
        """
        saved, world = len(meta["ranks"]), environment.world_size()
        if saved == world:
            return environment.rank(), meta["ranks"][environment.rank()]
        if any("fit" in part for part in meta["ranks"]):
            raise ValueError(
                f"BackupAndRestore: the backup {path} was taken mid-epoch by {saved} process(es), and "
                f"this run has {world}. Resume with {saved} process(es) (each holds part of the "
                "epoch's metrics), or use save_freq='epoch' backups to change the number."
            )
        return 0, meta["ranks"][0]

    def _restore_metrics(self, tensors: dict[str, torch.Tensor]) -> None:
        for i, metric in enumerate(getattr(self.model, "metrics", [])):
            state = _under(f"metrics/{i}/", tensors)
            if state and hasattr(metric, "load_state_dict"):
                metric.load_state_dict(state)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._apply_pending()  # here: after every callback's on_train_begin has reset its own state

    def _apply_pending(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        callbacks = self._peer_callbacks()
        for key, state in pending["callbacks"].items():
            if key in callbacks:
                callbacks[key].load_state_dict(state)
        for key, weights in pending["best_weights"].items():
            if key in callbacks:
                callbacks[key].best_weights = weights
        history = pending["history"]
        if history is not None:
            from .history import History

            for cb in callbacks.values():
                if isinstance(cb, History):
                    cb.history = {k: list(v) for k, v in history["history"].items()}
                    cb.epoch = list(history["epoch"])

    def _peer_callbacks(self) -> dict[str, Callback]:
        state = getattr(self.model, "_fit_state", None)
        peers = state.callbacks if state is not None else []
        # Keyed by type and rank among callbacks of that type, so a backup still matches when the
        # restarted command lists other kinds of callbacks around them.
        keyed: dict[str, Callback] = {}
        seen: dict[str, int] = {}
        for cb in peers:
            if cb is self:
                continue
            name = type(cb).__name__
            keyed[f"{name}:{seen.get(name, 0)}"] = cb
            seen[name] = seen.get(name, 0) + 1
        return keyed

    @staticmethod
    def _set_random_states(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        set_rng_state(rng_state_from_tensors(tensors, meta["rng"], "rng"))  # GPU states only on as many GPUs

    # ---- saving ----------------------------------------------------------------------

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        bad = [
            k
            for k, v in (logs or {}).items()
            if isinstance(_to_float(v), float) and not math.isfinite(_to_float(v))
        ]
        if bad:
            self._unhealthy = True
            warnings.warn(
                f"BackupAndRestore: epoch {epoch + 1} ended with non-finite {', '.join(bad)}; "
                "the previous backup is kept and no new one is written.",
                stacklevel=2,
            )
            return
        self._last_completed = epoch + 1
        self._save(epoch + 1)

    def _save(self, completed_epochs: int, mid_epoch: Any = None) -> None:
        """Every rank calls it: the full states are gathered, rank 0 writes and publishes."""
        tensors = {f"model/{k}": _cpu_copy(k, v) for k, v in self.model.state_dict().items()}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            tensors.update({f"optimizer/{k}": _cpu_copy(k, v) for k, v in optimizer.state_dict().items()})
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:  # the same on every rank: they hold the same full weights
            if self._unhealthy:
                return  # said once already
            self._unhealthy = True
            where = f"epoch {completed_epochs + 1}, batch {mid_epoch.step}" if mid_epoch else "this epoch"
            warnings.warn(
                f"BackupAndRestore: not backing up at {where}: non-finite values in {', '.join(bad[:5])}"
                f"{' ...' if len(bad) > 5 else ''}; the last good backup stays the one to resume from.",
                stacklevel=3,
            )
            return
        parts = checkpointing.gather_to_chief(self._local_state(mid_epoch))
        step = mid_epoch.step if mid_epoch is not None else 0
        name = f"backup-e{completed_epochs:05d}-b{step:07d}.safetensors"

        def write() -> None:  # rank 0 only: the rank ``parts`` reached
            assert parts is not None
            data = self._backup_bytes(completed_epochs, tensors, parts)
            with atomic_write(os.path.join(self.backup_dir, name), "wb") as f:
                f.write(data)

        checkpointing.publish(write, lambda: self._commit(name))

    def _backup_bytes(self, completed_epochs: int, tensors: dict[str, torch.Tensor], parts: list) -> bytes:
        """The backup file: the full states in ``tensors``, every rank's own ``parts``, the peers' states."""
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "version": 2,
            "epoch": completed_epochs,
            "tapefit_version": _tapefit_version(),
            "torch_version": torch.__version__,
            "ranks": [part_meta for _, part_meta in parts],
            "compile": self._compile_signature,
        }
        for r, (part_tensors, _) in enumerate(parts):
            tensors.update({f"ranks/{r}/{k}": v for k, v in part_tensors.items()})
        meta["callbacks"], meta["history"] = self._peer_states()
        for key, cb in self._peer_callbacks().items():  # EarlyStopping(restore_best_weights=True)'s copy
            best = getattr(cb, "best_weights", None)
            if isinstance(best, list):
                for i, w in enumerate(best):
                    tensors[f"callbacks/{key}/best_weights/{i:05d}"] = torch.from_numpy(np.array(w))
        return safetensors.torch.save(tensors, metadata={"tapefit": json.dumps(meta)})

    def _local_state(self, mid_epoch: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """What this process alone holds: its random states, and mid-epoch its metrics and logs."""
        tensors, rng_meta = rng_state_to_tensors(get_rng_state(), "rng")
        meta: dict[str, Any] = {"rng": rng_meta}
        if mid_epoch is not None:
            fit_tensors, meta["fit"] = mid_epoch.to_tensors()
            tensors.update({f"fit/{k}": v for k, v in fit_tensors.items()})
            for i, metric in enumerate(getattr(self.model, "metrics", [])):
                if hasattr(metric, "state_dict"):
                    for k, v in metric.state_dict().items():
                        tensors[f"metrics/{i}/{k}"] = _cpu_copy(k, v)
        return tensors, meta

    def _commit(self, name: str) -> None:
        """Write the index naming ``name`` (the completion marker), then drop unnamed backups."""
        previous = self._published if self.double_checkpoint and self._published != name else None
        index = {"format": _INDEX_FORMAT, "latest": name, "previous": previous}
        with atomic_write(self._index, "w") as f:
            json.dump(index, f)
        self._published = name
        for stale in self._backup_files():
            if stale not in (name, previous):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.backup_dir, stale))

    def _peer_states(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        from .history import History

        states: dict[str, Any] = {}
        history = None
        for key, cb in self._peer_callbacks().items():
            if isinstance(cb, History):
                history = {"history": cb.history, "epoch": cb.epoch}
                continue
            state = cb.state_dict()
            if state:
                try:
                    json.dumps(state)
                except TypeError:
                    state = {
                        k: v for k, v in state.items() if isinstance(v, (int, float, str, bool, type(None)))
                    }
                states[key] = state
        return states, history

    # ---- the end ---------------------------------------------------------------------

    def on_train_end(self, logs: dict | None = None) -> None:
        # A run killed after its last backup resumes with no epoch left to run: the History and
        # the other callbacks still get the states of the run they continue.
        self._apply_pending()
        epochs = self.params.get("epochs")
        completed = (
            not self._unhealthy
            and not getattr(self.model, "stop_training", False)
            and self._last_completed is not None
            and (epochs is None or self._last_completed >= epochs)
        )
        if not (completed and self.delete_checkpoint and _is_chief()):
            return
        with contextlib.suppress(FileNotFoundError):  # the index first: no index, no backup
            os.unlink(self._index)
        for name in self._backup_files():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.backup_dir, name))
        self._published = None
        with contextlib.suppress(OSError):  # only if empty: the folder may hold the user's files
            os.rmdir(self.backup_dir)
