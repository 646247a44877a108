"""`CallbackList`: calls every callback's hook in order, and skips batch hooks nobody uses.

The training loop asks ``needs_train_batch_hooks`` (and the test/predict ones) once, so a
`fit` whose callbacks only act per epoch pays nothing per step. Batch logs pass through
untouched (they may hold device tensors); epoch, begin and end logs are converted once to
Python floats, flattened and sorted, the way Keras 3 hands them to callbacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .callback import Callback, _pythonify_logs
from .history import History
from .progbar_logger import ProgbarLogger
from .time_split import TimeSplit

__all__ = ["CallbackList"]

_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}
# Callback's on_train_batch_* call the on_batch_* aliases, so overriding either counts.
_ALIASES = {
    "on_train_batch_begin": ("on_train_batch_begin", "on_batch_begin"),
    "on_train_batch_end": ("on_train_batch_end", "on_batch_end"),
}


def _overrides(callback: Callback, hook: str) -> bool:
    method = getattr(callback, hook, None)
    if method is None:
        return False
    return getattr(method, "__func__", None) is not getattr(Callback, hook)


def _flatten(callbacks: Any) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    flat: list[Callback] = []
    for item in callbacks:
        if isinstance(item, (list, tuple)):
            flat.extend(_flatten(item))
        elif isinstance(item, Callback):
            flat.append(item)
        else:
            raise TypeError(
                f"callbacks must be tapefit.callbacks.Callback instances; received {type(item).__name__} "
                f"({item!r}). Subclass tapefit.callbacks.Callback or wrap functions in LambdaCallback."
            )
    return flat


class CallbackList(Callback):
    """Container that calls each hook of a list of callbacks in order.

    Args:
        callbacks: Callback instances (a list, possibly nested, or a single one).
        add_history: Append a `History` if the list has none.
        add_progbar: Append a `ProgbarLogger` if the list has none.
        model: The model the callbacks act on.
        **params: Passed to every callback's ``set_params`` (``verbose``, ``epochs``, ``steps``).

    Attributes:
        needs_train_batch_hooks: Whether any callback overrides a training batch hook; when
            False the loop may skip ``on_train_batch_begin/end`` entirely.
        needs_test_batch_hooks: The same for `evaluate` batches.
        needs_predict_batch_hooks: The same for `predict` batches.
        time_split: The `TimeSplit` callback whose clocks ``fit`` runs its step loop with, or None.

    Example:
        >>> cbs = CallbackList([], add_history=True, verbose=0, epochs=1, steps=1)
        >>> [type(c).__name__ for c in cbs.callbacks], cbs.needs_train_batch_hooks
        (['History'], False)
    """

    def __init__(
        self,
        callbacks: Iterable[Callback] | Callback | None = None,
        add_history: bool = False,
        add_progbar: bool = False,
        model: Any = None,
        **params: Any,
    ) -> None:
        super().__init__()
        self.callbacks = _flatten(callbacks)
        self._history: History | None = None
        self._progbar: ProgbarLogger | None = None
        self._add_default_callbacks(add_history, add_progbar)
        self._refresh_flags()
        self.set_model(model)
        self.set_params(params)

    def _add_default_callbacks(self, add_history: bool, add_progbar: bool) -> None:
        for cb in self.callbacks:
            if isinstance(cb, ProgbarLogger):
                self._progbar = cb
            elif isinstance(cb, History):
                self._history = cb
        # History goes last so it records what other callbacks add to the epoch logs
        # (ReduceLROnPlateau's "learning_rate"), as Keras does.
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)
        # Time splits print after the progress bar's epoch line. Backups go after everything else,
        # so that an epoch's backup holds the state every other callback (EarlyStopping's wait,
        # the History) reached at the end of that epoch.
        from .backup_and_restore import BackupAndRestore

        splits = [cb for cb in self.callbacks if isinstance(cb, TimeSplit)]
        backups = [cb for cb in self.callbacks if isinstance(cb, BackupAndRestore)]
        rest = [cb for cb in self.callbacks if not isinstance(cb, (BackupAndRestore, TimeSplit))]
        self.callbacks = rest + splits + backups

    def _refresh_flags(self) -> None:
        # Per batch hook, only the callbacks that act on it: a step pays for listeners only.
        self._listeners = {
            hook: [cb for cb in self.callbacks if any(_overrides(cb, h) for h in _ALIASES.get(hook, (hook,)))]
            for hooks in _BATCH_HOOKS.values()
            for hook in hooks
        }
        for kind, hooks in _BATCH_HOOKS.items():
            setattr(self, f"needs_{kind}_batch_hooks", any(self._listeners[hook] for hook in hooks))
        # The callback that times fit's step loop (None: the loop runs untimed).
        splits = [cb for cb in self.callbacks if isinstance(cb, TimeSplit)]
        self.time_split: TimeSplit | None = splits[0] if splits else None
        # Whether every callback called per evaluation batch is tapefit's progress bar (a subclass may
        # read model.metrics), which reads metrics only through the lazy logs (so an evaluation may
        # defer its metric updates until then).
        self.test_batches_read_lazily = all(
            type(cb) is ProgbarLogger for hook in _BATCH_HOOKS["test"] for cb in self._listeners[hook]
        )
        # Callbacks other than the progress bar may keep the batch logs they are given, so they get
        # a plain dict each step; the progress bar reads lazily computed results when it draws.
        self.wants_batch_dicts = any(
            not isinstance(cb, ProgbarLogger)
            for hook in ("on_train_batch_end", "on_test_batch_end", "on_batch_end")
            for cb in self._listeners.get(hook, ())
        )

    def append(self, callback: Callback) -> None:
        """Add a callback at the end (it gets this list's model and params)."""
        self.callbacks.extend(_flatten([callback]))
        if self._model is not None:
            callback.set_model(self._model)
        if self.params:
            callback.set_params(self.params)
        self._refresh_flags()

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params
        if params:
            for cb in self.callbacks:
                cb.set_params(params)

    def set_model(self, model: Any) -> None:
        if model is None:
            return
        super().set_model(model)
        if self._history is not None:
            model.history = self._history
        for cb in self.callbacks:
            cb.set_model(model)

    def state_dict(self) -> dict[str, Any]:
        """Each callback's state, keyed by its position and class name."""
        return {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(self.callbacks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = self.state_dict()
        if set(state) != set(expected):
            raise KeyError(
                f"CallbackList.load_state_dict: the callbacks differ from the saved ones; "
                f"saved {sorted(state)}, now {sorted(expected)}"
            )
        for i, cb in enumerate(self.callbacks):
            cb.load_state_dict(state[f"{i}:{type(cb).__name__}"])

    def _call_batch(self, hook: str, batch: int, logs: dict | None) -> None:
        for cb in self._listeners[hook]:
            getattr(cb, hook)(batch, logs=logs)

    def _call(self, hook: str, *args: Any, logs: dict | None) -> None:
        logs = _pythonify_logs(logs)
        for cb in self.callbacks:
            getattr(cb, hook)(*args, logs)

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._call_batch("on_batch_begin", batch, logs)

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._call_batch("on_batch_end", batch, logs)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._call_batch("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._call_batch("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._call_batch("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._call_batch("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._call_batch("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._call_batch("on_predict_batch_end", batch, logs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        self._call("on_train_end", logs=logs)

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs: dict | None = None) -> None:
        self._call("on_test_end", logs=logs)

    def on_predict_begin(self, logs: dict | None = None) -> None:
        self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs: dict | None = None) -> None:
        self._call("on_predict_end", logs=logs)
