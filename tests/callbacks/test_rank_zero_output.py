"""Callbacks run on every rank of a distributed job, but only rank 0 prints their messages."""

from __future__ import annotations

import numpy as np
import pytest

import tapefit
from tapefit.callbacks import callback as callback_module


def _fit_with(cb):
    tapefit.utils.set_random_seed(0)
    model = tapefit.Sequential([tapefit.Input((2,)), tapefit.layers.Dense(1)])
    model.compile(optimizer=tapefit.optimizers.SGD(0.1), loss="mse")
    x = np.ones((8, 2), "float32")
    y = np.full((8, 1), np.nan if isinstance(cb, tapefit.callbacks.TerminateOnNaN) else 1.0, "float32")
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[cb])


CALLBACKS = {
    "EarlyStopping": lambda: tapefit.callbacks.EarlyStopping(
        monitor="loss", mode="max", patience=0, verbose=1
    ),
    "ReduceLROnPlateau": lambda: tapefit.callbacks.ReduceLROnPlateau(
        monitor="loss", mode="max", patience=0, verbose=1
    ),
    "LearningRateScheduler": lambda: tapefit.callbacks.LearningRateScheduler(lambda e, lr: lr, verbose=1),
    "TerminateOnNaN": lambda: tapefit.callbacks.TerminateOnNaN(),
}


@pytest.mark.parametrize("name", sorted(CALLBACKS))
@pytest.mark.parametrize("chief", [True, False])
def test_messages_come_from_rank_zero_only(name, chief, monkeypatch, capsys):
    monkeypatch.setattr(callback_module, "is_chief", lambda: chief)
    _fit_with(CALLBACKS[name]())
    out = capsys.readouterr().out
    assert (out.strip() != "") is chief, out
