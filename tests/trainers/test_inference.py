"""evaluate/predict run later batches under torch.inference_mode only where that is safe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers


class _ModeLog(tapefit.callbacks.Callback):
    """Records, at each batch's start, whether inference mode is on."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def on_test_batch_begin(self, batch, logs=None):
        self.modes.append(torch.is_inference_mode_enabled())

    def on_predict_batch_begin(self, batch, logs=None):
        self.modes.append(torch.is_inference_mode_enabled())


class _Cache(layers.Layer):
    """A user layer that keeps a tensor from its last call and uses it in the next."""

    def build(self, input_shape):
        self.scale = self.add_weight((input_shape[-1],), "ones", name="scale")

    def call(self, x):
        previous = self.__dict__.get("last", torch.ones(x.shape[-1]))
        self.last = x.mean(0)
        return x * self.scale * previous  # autograd keeps ``previous`` for the backward pass


class _Sub(tapefit.Model):
    def __init__(self):
        super().__init__()
        self.dense = layers.Dense(3)

    def call(self, x):
        return self.dense(x)


def _data(n=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 3, n)


def _compiled(model):
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def _modes(model, how, data):
    log = _ModeLog()
    x, y = data
    if how == "evaluate":
        model.evaluate(x, y, batch_size=8, verbose=0, callbacks=[log])
    else:
        model.predict(x, batch_size=8, verbose=0, callbacks=[log])
    return log.modes


@pytest.mark.parametrize("how", ["evaluate", "predict"])
def test_library_layers_on_arrays_run_later_batches_in_inference_mode(how):
    model = _compiled(tapefit.Sequential([tapefit.Input((4,)), layers.Dense(8, "relu"), layers.Dense(3)]))
    assert _modes(model, how, _data()) == [False, True, True, True, True]
    assert not torch.is_inference_mode_enabled()
    for v in [*model.weights, *(v for m in model.metrics for v in m.variables)]:
        assert not v.is_inference()
    x, y = _data()
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)  # training after it still works
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("how", ["evaluate", "predict"])
def test_results_equal_the_no_grad_ones(how, monkeypatch):
    model = _compiled(tapefit.Sequential([tapefit.Input((4,)), layers.Dense(8, "relu"), layers.Dense(3)]))
    x, y = _data()
    run = (lambda: model.evaluate(x, y, batch_size=8, verbose=0)) if how == "evaluate" else (
        lambda: model.predict(x, batch_size=8, verbose=0)
    )
    fast = run()
    monkeypatch.setattr("tapefit.trainers.trainer.inference_is_safe", lambda *a: False)
    np.testing.assert_array_equal(np.asarray(run()), np.asarray(fast))


def test_a_user_layer_a_subclassed_model_a_dataset_or_an_own_step_keep_no_grad():
    x, y = _data()
    user_layer = _compiled(tapefit.Sequential([tapefit.Input((4,)), _Cache(), layers.Dense(3)]))
    assert not any(_modes(user_layer, "evaluate", (x, y)))
    user_layer(torch.from_numpy(x[:8]), training=True).sum().backward()  # its cached tensor can join autograd
    assert not any(_modes(_compiled(_Sub()), "predict", (x, y)))
    model = _compiled(tapefit.Sequential([tapefit.Input((4,)), layers.Dense(3)]))
    ds = tapefit.data.Dataset.from_tensor_slices((x, y)).batch(8).cache()
    log = _ModeLog()
    model.evaluate(ds, verbose=0, callbacks=[log])
    assert not any(log.modes)
    model.fit(ds, epochs=1, verbose=0)  # the cache was filled outside inference mode

    class OwnStep(tapefit.Sequential):
        def test_step(self, data):
            return super().test_step(data)

    own = _compiled(OwnStep([tapefit.Input((4,)), layers.Dense(3)]))
    assert not any(_modes(own, "evaluate", (x, y)))
