"""compile(steps_per_execution=N): batch callbacks once per N batches, the same training otherwise.

The reference for which batches form an execution is Keras 3's own ``EpochIterator`` (its torch
trainer refuses N > 1, but the grouping is backend-independent): ``on_*_batch_begin`` gets the
first batch of each execution, ``on_*_batch_end`` the last one. Where Keras's last, short
execution reports an index past the end of the data (``begin + N - 1``), tapefit reports the
batch that really ran last.
"""

import math
import warnings

import numpy as np
import pytest

import tapefit
from tapefit import layers


def _keras_groups(n: int, batch_size: int, per_execution: int) -> list[tuple[int, int, int]]:
    """(begin, end, batches) of every execution, from Keras's EpochIterator."""
    from keras.src.trainers.epoch_iterator import EpochIterator

    x = np.zeros((n, 1), "float32")
    it = EpochIterator(x, x, batch_size=batch_size, steps_per_execution=per_execution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns when its last execution is short
        return [(begin, end, len(data)) for begin, end, data in it]


class _Recorder(tapefit.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events: list[tuple] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(("train_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("train_end", batch, float(logs["loss"])))

    def on_test_batch_begin(self, batch, logs=None):
        self.events.append(("test_begin", batch))

    def on_test_batch_end(self, batch, logs=None):
        self.events.append(("test_end", batch))

    def on_predict_batch_begin(self, batch, logs=None):
        self.events.append(("predict_begin", batch))

    def on_predict_batch_end(self, batch, logs=None):
        self.events.append(("predict_end", batch, tuple(logs["outputs"].shape)))

    def of(self, kind):
        return [e[1] for e in self.events if e[0] == kind]


def _model(per_execution: int = 1) -> tapefit.Model:
    tapefit.utils.set_random_seed(3)
    model = tapefit.Sequential([tapefit.Input((5,)), layers.Dense(8, activation="relu"), layers.Dense(3)])
    model.compile(
        optimizer="adam",
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=per_execution,
    )
    return model


def _data(n: int = 40):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 5)).astype("float32"), rng.integers(0, 3, n)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4", None])
def test_steps_per_execution_must_be_a_positive_int(bad):
    model = tapefit.Sequential([tapefit.Input((5,)), layers.Dense(3)])
    with pytest.raises(ValueError, match="steps_per_execution must be a positive integer"):
        model.compile(optimizer="sgd", loss="mse", steps_per_execution=bad)


@pytest.mark.parametrize("per_execution", [1, 3, 4, 10, 25])
def test_batch_callbacks_run_once_per_execution_as_keras_groups_them(per_execution):
    x, y = _data(40)  # 10 batches of 4
    model, rec = _model(per_execution), _Recorder()
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[rec])
    groups = _keras_groups(40, 4, per_execution)
    assert len(groups) == math.ceil(10 / per_execution)
    assert rec.of("train_begin") == [b for b, _, _ in groups] * 2
    assert rec.of("train_end") == [min(e, 9) for _, e, _ in groups] * 2
    assert model.optimizer.iterations.item() == 20  # every batch still trained

    rec.events.clear()
    model.evaluate(x, y, batch_size=4, verbose=0, callbacks=[rec])
    assert rec.of("test_begin") == [b for b, _, _ in groups]
    assert rec.of("test_end") == [min(e, 9) for _, e, _ in groups]

    rec.events.clear()
    model.predict(x, batch_size=4, verbose=0, callbacks=[rec])
    assert rec.of("predict_begin") == [b for b, _, _ in groups]
    # on_predict_batch_end gets the execution's outputs, its batches joined (as Keras does)
    assert [e[2] for e in rec.events if e[0] == "predict_end"] == [(4 * k, 3) for _, _, k in groups]


def test_validation_inside_fit_groups_its_batches_too():
    x, y = _data(40)
    model, rec = _model(4), _Recorder()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x[:24], y[:24]), callbacks=[rec])
    groups = _keras_groups(24, 4, 4)
    assert rec.of("test_begin") == [b for b, _, _ in groups] == [0, 4]
    assert rec.of("test_end") == [3, 5]


def test_batch_end_logs_are_those_of_the_executions_last_step():
    x, y = _data(40)
    grouped, single = _Recorder(), _Recorder()
    _model(5).fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[grouped])
    _model(1).fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[single])
    per_batch = {e[1]: e[2] for e in single.events if e[0] == "train_end"}
    for _, batch, loss in (e for e in grouped.events if e[0] == "train_end"):
        assert loss == pytest.approx(per_batch[batch], rel=1e-6)


def test_weights_equal_those_of_one_step_per_execution():
    x, y = _data(44)  # 11 batches: the last execution is short
    ones = _model(1)  # each model is seeded, then fitted (shuffling draws from the seeded state)
    h1 = ones.fit(x, y, batch_size=4, epochs=3, verbose=0, validation_split=0.25)
    fours = _model(4)
    h4 = fours.fit(x, y, batch_size=4, epochs=3, verbose=0, validation_split=0.25)
    for a, b in zip(ones.get_weights(), fours.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert h1.history == h4.history
    np.testing.assert_array_equal(ones.predict(x, verbose=0), fours.predict(x, verbose=0))


def test_stop_training_takes_effect_at_the_end_of_an_execution():
    x, y = _data(40)
    model = _model(4)

    class StopAtOnce(tapefit.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True

    model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[StopAtOnce()])
    assert model.optimizer.iterations.item() == 4  # the whole first execution ran, nothing after


def test_steps_per_epoch_is_never_exceeded():
    x, y = _data(40)
    model, rec = _model(4), _Recorder()
    model.fit(x, y, batch_size=4, epochs=2, steps_per_epoch=6, verbose=0, callbacks=[rec])
    assert model.optimizer.iterations.item() == 12
    assert rec.of("train_begin") == [0, 4, 0, 4]
    assert rec.of("train_end") == [3, 5, 3, 5]


def test_progress_bar_counts_every_batch(capsys):
    x, y = _data(40)
    _model(4).fit(x, y, batch_size=4, epochs=1, verbose=2)
    assert "10/10" in capsys.readouterr().out


def test_the_setting_is_kept_in_the_compile_config():
    model = _model(7)
    assert model.steps_per_execution == 7
    assert model._compile_config["steps_per_execution"] == 7
