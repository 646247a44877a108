"""`BackupAndRestore`: resume an interrupted `fit` exactly where the last backup was taken.

One safetensors file holds the model's, the optimizer's and the metrics' states, the random
states and the epoch's log accumulators; its metadata field holds JSON (epoch and step,
versions, Python and numpy random states, the other callbacks' states, the History so far).
With ``save_freq=N`` a backup is taken every N batches and `fit` resumes at that step: it
replays the epoch's start (random states, data order), skips the batches already done and
continues with the random streams of the moment of the backup, so the weights come out bit for
bit as in a run that was never interrupted (on CPU; for arrays, tensors, Datasets and
DataLoaders, random ``map`` functions included, as long as they draw in the training thread:
a ``map`` with ``num_parallel_calls`` > 1 draws on threads in no fixed order, so it is not
reproducible even without an interruption).

Files are written atomically, the one before is kept as a fallback, and neither is deleted
unless training ran to its last epoch without a stop: a NaN, an early stop or an error keeps
them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import warnings
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from .._atomic import atomic_write, clean_stale_temporaries
from .callback import Callback, _is_chief, _to_float

__all__ = ["BackupAndRestore"]

_FORMAT = "tapefit.backup"


class _Unreadable(Exception):
    """A backup file that is missing, truncated or not ours."""


def _cpu_copy(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"BackupAndRestore: state entry {name!r} is a {type(value).__name__}, not a tensor.")
    return value.detach().to("cpu", copy=True).contiguous()


def _tapefit_version() -> str:
    from .. import __version__

    return __version__


class BackupAndRestore(Callback):
    """Back up the training state at each epoch's end and restore it when `fit` starts again.

    Restart the same script after a crash or a kill: `fit` resumes at the epoch after the
    last backup, with the model, the optimizer (moments, iterations) and the global random
    states (Python, numpy, torch) as they were then. `fit` reads :attr:`initial_epoch` after
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
        self._path = os.path.join(self.backup_dir, "latest.backup.safetensors")
        self._prev_path = os.path.join(self.backup_dir, "previous.backup.safetensors")
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
        if self._batches % self.save_freq == 0 and state is not None and _is_chief():
            self._save(state.epoch, mid_epoch=state)

    # ---- restoring -------------------------------------------------------------------

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.initial_epoch = 0
        self._last_completed = None
        self._unhealthy = False
        if _is_chief():
            clean_stale_temporaries(self.backup_dir)
        candidates = [p for p in (self._path, self._prev_path) if os.path.exists(p)]
        failures = []
        for path in candidates:
            try:
                meta, tensors = self._read(path)
            except _Unreadable as e:
                warnings.warn(
                    f"BackupAndRestore: cannot read the backup {path} ({e}); trying an older one.",
                    stacklevel=2,
                )
                failures.append(f"{path}: {e}")
                continue
            self._apply(path, meta, tensors)
            self.initial_epoch = self._last_completed = int(meta["epoch"])
            if "fit" in meta and int(meta["fit"]["step"]) > 0:
                from ..trainers.fit_state import ResumePoint

                fit_tensors = {k[len("fit/") :]: v for k, v in tensors.items() if k.startswith("fit/")}
                self.model._resume_point = ResumePoint.from_tensors(fit_tensors, meta["fit"])
                self._restore_metrics(tensors)
            if failures and path == self._prev_path and _is_chief():
                with contextlib.suppress(OSError):  # so the next save does not rotate it over the good one
                    os.unlink(self._path)
            return
        if failures:
            raise RuntimeError(
                "BackupAndRestore: no backup in "
                + self.backup_dir
                + " could be read ("
                + "; ".join(failures)
                + "). Refusing to restart from scratch silently: delete the folder "
                "to start over."
            )

    def _read(self, path: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        try:
            with safetensors.safe_open(path, framework="pt", device="cpu") as f:
                meta = json.loads((f.metadata() or {})["tapefit"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, KeyError, ValueError, safetensors.SafetensorError) as e:
            raise _Unreadable(f"{type(e).__name__}: {e}") from e
        if meta.get("format") != _FORMAT or "epoch" not in meta:
            raise _Unreadable("not a tapefit backup file")
        return meta, tensors

    def _apply(self, path: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
        optimizer_state = {
            k[len("optimizer/") :]: v for k, v in tensors.items() if k.startswith("optimizer/")
        }
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
        if problems:
            raise ValueError(
                f"BackupAndRestore: the backup {path} does not fit this model; nothing was loaded.\n  "
                + "\n  ".join(problems)
                + f"\nDelete {self.backup_dir} to start over with the new architecture."
            )
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer_state and optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
        self.model.load_state_dict(model_state)
        self._set_random_states(meta, tensors)
        best: dict[str, list[np.ndarray]] = {}
        for name in sorted(k for k in tensors if k.startswith("callbacks/")):
            key = name[len("callbacks/") :].split("/best_weights/")[0]
            best.setdefault(key, []).append(tensors[name].numpy())
        self._pending = {
            "callbacks": meta.get("callbacks", {}),
            "history": meta.get("history"),
            "best_weights": best,
        }

    def _restore_metrics(self, tensors: dict[str, torch.Tensor]) -> None:
        for i, metric in enumerate(getattr(self.model, "metrics", [])):
            prefix = f"metrics/{i}/"
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            if state and hasattr(metric, "load_state_dict"):
                metric.load_state_dict(state)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        # Applied here, after every callback's on_train_begin has reset its own state.
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
        if "rng/torch" in tensors:
            torch.set_rng_state(tensors["rng/torch"])
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        if "python_random" in meta:
            version, state, gauss = meta["python_random"]
            random.setstate((version, tuple(state), gauss))
        if "numpy_random" in meta and "rng/numpy" in tensors:
            name, pos, has_gauss, cached = meta["numpy_random"]
            keys = tensors["rng/numpy"].numpy().astype(np.uint32)
            np.random.set_state((name, keys, pos, has_gauss, cached))

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
        if _is_chief():
            self._save(epoch + 1)

    def _save(self, completed_epochs: int, mid_epoch: Any = None) -> None:
        tensors = {f"model/{k}": _cpu_copy(k, v) for k, v in self.model.state_dict().items()}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            tensors.update({f"optimizer/{k}": _cpu_copy(k, v) for k, v in optimizer.state_dict().items()})
        tensors["rng/torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng/cuda/{i:03d}"] = state
        np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
        tensors["rng/numpy"] = torch.from_numpy(np.asarray(np_keys, dtype=np.int64))
        py_version, py_state, py_gauss = random.getstate()
        meta = {
            "format": _FORMAT,
            "version": 1,
            "epoch": completed_epochs,
            "tapefit_version": _tapefit_version(),
            "torch_version": torch.__version__,
            "python_random": [py_version, list(py_state), py_gauss],
            "numpy_random": [np_name, int(np_pos), int(np_has_gauss), float(np_cached)],
        }
        meta["callbacks"], meta["history"] = self._peer_states()
        for key, cb in self._peer_callbacks().items():  # EarlyStopping(restore_best_weights=True)'s copy
            best = getattr(cb, "best_weights", None)
            if isinstance(best, list):
                for i, w in enumerate(best):
                    tensors[f"callbacks/{key}/best_weights/{i:05d}"] = torch.from_numpy(np.array(w))
        if mid_epoch is not None:
            fit_tensors, fit_meta = mid_epoch.to_tensors()
            tensors.update({f"fit/{k}": v for k, v in fit_tensors.items()})
            meta["fit"] = fit_meta
            for i, metric in enumerate(getattr(self.model, "metrics", [])):
                if hasattr(metric, "state_dict"):
                    for k, v in metric.state_dict().items():
                        tensors[f"metrics/{i}/{k}"] = _cpu_copy(k, v)
        data = safetensors.torch.save(tensors, metadata={"tapefit": json.dumps(meta)})
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._path):
            os.replace(self._path, self._prev_path)
        with atomic_write(self._path, "wb") as f:
            f.write(data)

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
        epochs = self.params.get("epochs")
        completed = (
            not self._unhealthy
            and not getattr(self.model, "stop_training", False)
            and self._last_completed is not None
            and (epochs is None or self._last_completed >= epochs)
        )
        if not (completed and self.delete_checkpoint and _is_chief()):
            return
        for path in (self._path, self._prev_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(OSError):  # only if empty: the folder may hold the user's files
            os.rmdir(self.backup_dir)
