"""TimeSplit: compute + input pipeline + overhead add up to the step loop's time, and each slow
part shows up where it belongs."""

import time

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers
from tapefit.callbacks import CallbackList, TimeSplit

SLEEP = 0.004  # seconds: well above a step of these tiny models (~0.3 ms) on a loaded 2-core machine


def _model() -> tapefit.Model:
    model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(8, activation="relu"), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _arrays(n: int = 64):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 6)).astype("float32"), rng.standard_normal((n, 2)).astype("float32")


def test_the_three_parts_add_up_to_the_step_time_every_epoch():
    x, y = _arrays(64)
    split = TimeSplit(verbose=0)
    _model().fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[split])
    assert split.history["steps"] == [8, 8, 8]
    for i in range(3):
        parts = sum(split.history[k][i] for k in ("compute_ms", "pipeline_ms", "overhead_ms"))
        assert parts == pytest.approx(split.history["step_ms"][i], rel=1e-9, abs=1e-9)
        assert all(split.history[k][i] >= 0 for k in ("compute_ms", "pipeline_ms", "overhead_ms"))
    assert split.last == {k: v[-1] for k, v in split.history.items()}


def test_the_step_time_covers_the_loop_as_timed_from_outside():
    x, y = _arrays(64)
    split = TimeSplit(verbose=0)
    seen: dict[str, float] = {}

    class Clock(tapefit.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen["begin"] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seen["end"] = time.perf_counter()

    _model().fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[Clock(), split])
    loop_ms = split.last["step_ms"] * split.last["steps"]
    assert 0 < loop_ms <= 1000.0 * (seen["end"] - seen["begin"])


def test_a_slow_dataset_map_shows_up_as_input_pipeline_time():
    x, y = _arrays(48)

    def slow(xb, yb):
        time.sleep(SLEEP)
        return xb, yb

    data = tapefit.data.Dataset.from_tensor_slices((x, y)).batch(8).map(slow)
    split = TimeSplit(verbose=0)
    _model().fit(data, epochs=1, verbose=0, callbacks=[split])
    assert split.last["steps"] == 6
    assert split.last["pipeline_ms"] >= 1000 * SLEEP * 0.95
    assert split.last["pipeline_ms"] > split.last["compute_ms"] + split.last["overhead_ms"]


def test_a_slow_generator_shows_up_as_input_pipeline_time():
    x, y = _arrays(48)

    def batches():
        while True:
            for i in range(0, 48, 8):
                time.sleep(SLEEP)
                yield x[i : i + 8], y[i : i + 8]

    split = TimeSplit(verbose=0)
    _model().fit(batches(), steps_per_epoch=6, epochs=2, verbose=0, callbacks=[split])
    assert split.history["steps"] == [6, 6]
    assert min(split.history["pipeline_ms"]) >= 1000 * SLEEP * 0.95


def test_a_slow_callback_shows_up_as_overhead():
    x, y = _arrays(48)

    class Slow(tapefit.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(SLEEP)

    split = TimeSplit(verbose=0)
    _model().fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[Slow(), split])
    assert split.last["overhead_ms"] >= 1000 * SLEEP * 0.95
    assert split.last["overhead_ms"] > split.last["compute_ms"] + split.last["pipeline_ms"]


def test_a_slow_train_step_shows_up_as_compute():
    x, y = _arrays(48)

    class SlowStep(tapefit.Sequential):
        def train_step(self, data):
            time.sleep(SLEEP)
            return super().train_step(data)

    model = SlowStep([tapefit.Input((6,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    split = TimeSplit(verbose=0)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[split])
    assert split.last["compute_ms"] >= 1000 * SLEEP * 0.95
    assert split.last["compute_ms"] > split.last["pipeline_ms"] + split.last["overhead_ms"]


def test_one_line_per_epoch_after_the_progress_bar_and_silent_with_verbose_0(capsys):
    x, y = _arrays(32)
    _model().fit(x, y, batch_size=8, epochs=2, verbose=2, callbacks=[TimeSplit()])
    lines = capsys.readouterr().out.strip().splitlines()
    split_lines = [i for i, line in enumerate(lines) if "time split" in line]
    assert len(split_lines) == 2
    assert lines[split_lines[0]].startswith("Epoch 1 time split:")
    assert "compute" in lines[split_lines[0]] and "input pipeline" in lines[split_lines[0]]
    assert "4/4" in lines[split_lines[0] - 1]  # printed after the epoch's progress line

    _model().fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[TimeSplit()])
    assert capsys.readouterr().out == ""
    _model().fit(x, y, batch_size=8, epochs=1, verbose=2, callbacks=[TimeSplit(verbose=0)])
    assert "time split" not in capsys.readouterr().out


def test_without_the_callback_the_loop_is_not_timed(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the loop was timed without a TimeSplit callback")

    monkeypatch.setattr(TimeSplit, "begin_loop", fail)
    assert CallbackList([tapefit.callbacks.History()]).time_split is None
    x, y = _arrays(32)
    _model().fit(x, y, batch_size=8, epochs=1, verbose=0)
    split = TimeSplit(verbose=0)
    assert CallbackList([split]).time_split is split


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_compute_is_read_from_events_without_a_sync_in_the_step_loop():
    class Strict(TimeSplit):  # any host-device sync between the loop's start and end raises
        def begin_loop(self, *args):
            timed = super().begin_loop(*args)
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            return timed

        def end_loop(self):
            torch.cuda.set_sync_debug_mode("default")
            super().end_loop()

    x, y = _arrays(64)
    model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(8, activation="relu"), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    split = Strict(verbose=0)
    try:
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[split])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert next(model.parameters()).device.type == "cuda"
    assert min(split.history["compute_ms"]) > 0
    for i in range(2):
        parts = sum(split.history[k][i] for k in ("compute_ms", "pipeline_ms", "overhead_ms"))
        assert parts == pytest.approx(split.history["step_ms"][i], rel=1e-6)
