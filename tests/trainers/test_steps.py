"""Overriding train_step/test_step, models owning their optimizers, and what fit() accepts."""

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


def _net():
    return tapefit.Sequential([tapefit.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(2)])


class TfKeras2Step(tapefit.Model):
    """Seed 000's first form: compiled_loss / compiled_metrics from tf.keras 2."""

    def __init__(self):
        super().__init__()
        self.model = _net()

    def train_step(self, data):
        x, y = data
        with tapefit.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            loss = self.compiled_loss(y, y_pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.compiled_metrics.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def test_tf_keras2_step_reports_epoch_mean_loss_and_accuracy():
    x, y = _data()
    model = TfKeras2Step()
    model.compile(
        optimizer="adam",
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    seen = []
    cb = tapefit.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(float(logs["loss"])))
    hist = model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0, callbacks=[cb])
    assert set(hist.history) == {"loss", "accuracy"}
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    # the loss tracker is a running, batch-size-weighted mean: the epoch value equals the last batch's log
    assert hist.history["loss"][-1] == pytest.approx(seen[-1], rel=1e-6)


class OwnCompile(tapefit.Model):
    """Seed 000's second form: compile() overridden, raw loss returned (averaged by fit)."""

    def __init__(self):
        super().__init__()
        self.model = _net()
        self.acc = tapefit.metrics.SparseCategoricalAccuracy(name="accuracy")

    def compile(self, optimizer, loss):
        super().compile()
        self.optimizer = optimizer
        self.loss = loss

    def train_step(self, data):
        x, y = data
        with tapefit.GradientTape() as tape:
            loss = self.loss(y, self.model(x, training=True))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.acc.update_state(y, self.model(x))
        return {"loss": loss, "accuracy": self.acc.result()}

    def test_step(self, data):
        x, y = data
        y_pred = self.model(x)
        self.acc.update_state(y, y_pred)
        return {"loss": self.loss(y, y_pred), "accuracy": self.acc.result()}


def test_raw_step_values_are_averaged_over_the_epoch():
    x, y = _data(48)
    model = OwnCompile()
    model.compile(tapefit.optimizers.SGD(0.0), tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    with torch.no_grad():
        per_batch = [
            float(model.loss(torch.from_numpy(y[i : i + 16]), model.model(torch.from_numpy(x[i : i + 16]))))
            for i in range(0, 48, 16)
        ]
    assert hist.history["loss"][0] == pytest.approx(np.mean(per_batch), rel=1e-5)
    res = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(res) == {"loss", "accuracy"}


class GAN(tapefit.Model):
    def __init__(self):
        super().__init__()
        self.generator = tapefit.Sequential([tapefit.Input((2,)), layers.Dense(4)])
        self.discriminator = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(1)])
        self.d_tracker = tapefit.metrics.Mean(name="d_loss")
        self.g_tracker = tapefit.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_tracker, self.g_tracker]

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn

    def train_step(self, real):
        noise = torch.randn(real.shape[0], 2)
        with tapefit.GradientTape() as tape:
            fake = self.generator(noise)
            d_loss = self.loss_fn(torch.ones(real.shape[0], 1), self.discriminator(real)) + self.loss_fn(
                torch.zeros(real.shape[0], 1), self.discriminator(fake.detach())
            )
        d_vars = self.discriminator.trainable_weights
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, d_vars), d_vars))
        with tapefit.GradientTape() as tape:
            g_loss = self.loss_fn(torch.ones(real.shape[0], 1), self.discriminator(self.generator(noise)))
        g_vars = self.generator.trainable_weights
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars))
        self.d_tracker.update_state(d_loss)
        self.g_tracker.update_state(g_loss)
        return {m.name: m.result() for m in self.metrics}


def test_gan_with_two_optimizers_updates_both_networks_only_through_their_own_optimizer():
    gan = GAN()
    gan.compile(
        tapefit.optimizers.Adam(1e-2),
        tapefit.optimizers.Adam(1e-2),
        tapefit.losses.BinaryCrossentropy(from_logits=True),
    )
    g0, d0 = gan.generator.get_weights(), gan.discriminator.get_weights()
    data = tapefit.data.Dataset.from_tensor_slices(
        np.random.default_rng(0).normal(3, 1, (64, 4)).astype("float32")
    )
    hist = gan.fit(data.batch(16), epochs=2, verbose=0)
    assert set(hist.history) == {"d_loss", "g_loss"}
    assert int(gan.d_optimizer.iterations) == 8 and int(gan.g_optimizer.iterations) == 8
    assert any(not np.allclose(a, b) for a, b in zip(g0, gan.generator.get_weights()))
    assert any(not np.allclose(a, b) for a, b in zip(d0, gan.discriminator.get_weights()))


class Keras3Step(tapefit.Model):
    def __init__(self):
        super().__init__()
        self.net = _net()

    def call(self, x, training=False):
        return self.net(x, training=training)

    def train_step(self, data):
        x, y = data
        with tapefit.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data
        y_pred = self(x, training=False)
        next(m for m in self.metrics if m.name == "loss").update_state(
            self.compute_loss(x=x, y=y, y_pred=y_pred)
        )
        return self.compute_metrics(x, y, y_pred)


def test_keras3_step_with_compute_loss_and_compute_metrics():
    x, y = _data()
    model = Keras3Step()
    model.compile(
        optimizer="adam",
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    hist = model.fit(x, y, epochs=2, batch_size=16, validation_data=(x, y), verbose=0)
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_fit_accepts_dataset_dataloader_and_generator():
    x, y = _data(32)
    ds = tapefit.data.Dataset.from_tensor_slices((x, y)).batch(8)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8
    )

    def gen():
        while True:
            for i in range(0, 32, 8):
                yield x[i : i + 8], y[i : i + 8]

    for data, kwargs in ((ds, {}), (loader, {}), (gen(), {"steps_per_epoch": 4})):
        model = _net()
        model.compile(optimizer="sgd", loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
        calls = []
        cb = tapefit.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs, calls=calls: calls.append(b))
        model.fit(data, epochs=2, verbose=0, callbacks=[cb], **kwargs)
        assert calls == [0, 1, 2, 3] * 2


def test_validation_split_holds_out_the_last_samples_before_shuffling():
    x = np.arange(10, dtype="float32").reshape(10, 1)
    seen = []

    class Spy(tapefit.Model):
        def __init__(self):
            super().__init__()
            self.d = layers.Dense(1)

        def call(self, x, training=False):
            return self.d(x)

        def test_step(self, data):
            seen.append(data[0].flatten().tolist())
            return super().test_step(data)

    model = Spy()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x, validation_split=0.3, batch_size=4, verbose=0)
    assert seen == [[7.0, 8.0, 9.0]]


def test_callbacks_hooks_order_in_fit():
    x, y = _data(16)
    events = []

    class Recorder(tapefit.callbacks.Callback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                return lambda *a, **k: events.append(name)
            return super().__getattribute__(name)

    model = _net()
    model.compile(optimizer="sgd", loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, validation_data=(x, y), verbose=0, callbacks=[Recorder()])
    hooks = [e for e in events if e not in ("on_batch_begin", "on_batch_end")]
    assert hooks[:2] == ["on_train_begin", "on_epoch_begin"]
    assert hooks[2:6] == ["on_train_batch_begin", "on_train_batch_end"] * 2
    assert hooks[6] == "on_test_begin" and hooks[-3:] == ["on_test_end", "on_epoch_end", "on_train_end"]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m, x, y: m.fit(x, y[:10], verbose=0), r"x has 64 samples, y has 10 samples"),
        (lambda m, x, y: m.fit(x, y, batch_size=0, verbose=0), "batch_size must be a positive integer"),
        (
            lambda m, x, y: m.fit(
                tapefit.data.Dataset.from_tensor_slices((x, y)).batch(4), validation_split=0.2, verbose=0
            ),
            "validation_split is only supported for arrays",
        ),
        (lambda m, x, y: m.fit(np.array([["a"] * 4] * 64), y, verbose=0), "dtype <U1"),
        (lambda m, x, y: m.fit(x[:0], y[:0], verbose=0), "empty"),
    ],
)
def test_bad_input_errors_name_the_problem(call, match):
    x, y = _data()
    model = _net()
    model.compile(optimizer="sgd", loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.get_weights()
    with pytest.raises((ValueError, TypeError), match=match):
        call(model, x, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_before_compile_is_a_clear_error():
    x, y = _data()
    with pytest.raises(ValueError, match=r"compile\(\) before fit"):
        _net().fit(x, y)


def test_metric_results_are_computed_only_when_read():
    x, y = _data(64)
    model = _net()
    model.compile(
        optimizer="sgd",
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x[:8], y[:8], verbose=0)  # builds the compiled metrics
    calls = []
    acc = model._compile_metrics.metrics[0]
    original = acc.result
    acc.result = lambda: calls.append(1) or original()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert len(calls) == 2  # once per epoch end, not once per step

    kept = []
    cb = tapefit.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: kept.append(logs))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    assert all(type(logs) is dict for logs in kept)
    assert kept[0]["loss"] is not kept[-1]["loss"]  # each step's logs are its own


class _CountsPositives(tapefit.Sequential):
    """Keras's customization point: the default steps return ``compute_metrics``'s logs."""

    calls = 0

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        type(self).calls += 1
        logs = dict(super().compute_metrics(x, y, y_pred, sample_weight))
        logs["positives"] = (y_pred.argmax(-1) == 1).float().mean()
        return logs


def test_default_steps_return_an_overridden_compute_metrics():
    x, y = _data(96)
    model = _CountsPositives([tapefit.Input((4,)), layers.Dense(2)])
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert _CountsPositives.calls == 3
    result = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert _CountsPositives.calls == 6  # every evaluation batch too (no chunked updates)
    with torch.no_grad():
        positives = (model(torch.from_numpy(x)).argmax(-1) == 1).float().mean().item()
    assert result["positives"] == pytest.approx(positives)  # the mean over the 3 equal batches
    assert set(history.history) == {"loss", "accuracy", "positives"}


def test_a_compute_metrics_set_on_the_model_is_what_the_steps_return():
    x, y = _data(64)
    model = _net()
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    default = model.compute_metrics
    calls = []
    model.compute_metrics = lambda *args, **kwargs: (
        calls.append(1) or {**default(*args, **kwargs), "mine": 1.0}
    )
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    result = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert len(calls) == 4 and history.history["mine"] == [1.0] and result["mine"] == 1.0
