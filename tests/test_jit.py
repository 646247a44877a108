"""Compiled steps: traced once over built state, one compile cache per model, no recompiles.

torch.compile runs with its "eager" backend here: what is tested (dynamo's tracing, guards and
recompilation) is the same as with inductor, at a fraction of the compile time.
"""

from __future__ import annotations

import copy
import functools
import gc
import weakref

import numpy as np
import pytest
import torch
import torch._dynamo

import tapefit


@pytest.fixture
def fast_compile(monkeypatch):
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        yield
    torch._dynamo.reset()


def _data():
    rng = np.random.default_rng(0)
    return rng.random((64, 12), dtype=np.float32), rng.integers(0, 5, 64)


def _model(jit_compile, seed: int = 0) -> tapefit.Model:
    torch.manual_seed(seed)
    model = tapefit.Sequential(
        [
            tapefit.Input((12,)),
            tapefit.layers.Dense(16, activation="relu"),
            tapefit.layers.BatchNormalization(),
            tapefit.layers.Dense(5),
        ]
    )
    model.compile(
        optimizer=tapefit.optimizers.Adam(0.01),
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


def test_compiled_fit_matches_eager_and_never_recompiles_across_models(fast_compile):
    x, y = _data()
    eager = _model(False)
    eager_history = eager.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False).history
    # Several models in one process, each fitted twice with an evaluate between: any
    # recompilation raises (error_on_recompile), so each is traced once, over built state.
    compiled = [_model(True) for _ in range(3)]
    for model in compiled:
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history
        model.evaluate(x, y, verbose=0)
        history2 = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False).history
        assert history["loss"] + history2["loss"] == pytest.approx(eager_history["loss"], rel=1e-5)
        for a, b in zip(model.get_weights(), eager.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_copy_runs_its_own_step_and_the_cache_does_not_keep_a_model_alive(fast_compile):
    x, y = _data()
    model = _model(True)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    twin = copy.deepcopy(model)
    twin.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(twin.get_weights(), before))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_compile_again_starts_a_fresh_step(fast_compile):
    x, y = _data()
    model = _model(True)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", jit_compile=True)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # a new optimizer: traced anew, not recompiled


def test_function_runs_its_first_call_eagerly_then_compiled_without_recompiling(fast_compile):
    from torch._dynamo.utils import counters

    model = tapefit.Sequential([tapefit.Input((12,)), tapefit.layers.Dense(5)])
    optimizer = tapefit.optimizers.Adam(0.01)
    metric = tapefit.metrics.Mean()

    @tapefit.function(jit_compile=True)
    def step(x):
        with tapefit.GradientTape() as tape:
            loss = model(x).square().mean()
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))  # builds its slots on call 1
        metric.update_state(loss)
        return loss

    x = torch.rand(8, 12)
    counters.clear()
    step(x)
    assert counters["stats"]["unique_graphs"] == 0  # the first call ran eagerly
    step(x)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    for _ in range(3):
        step(x)  # a recompilation would raise (error_on_recompile)
    assert counters["stats"]["unique_graphs"] == graphs
    assert int(optimizer.iterations) == 5


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_a_compiled_train_step_breaks_only_at_backward(policy, fast_compile):
    from torch._dynamo.utils import counters

    layers = tapefit.layers
    tapefit.mixed_precision.set_global_policy(policy)
    try:
        model = tapefit.Sequential(
            [
                tapefit.Input((8, 8, 3)),
                layers.Conv2D(8, 3, padding="same", use_bias=False),
                layers.BatchNormalization(),
                layers.Activation("gelu"),
                layers.MaxPooling2D(),
                layers.Flatten(),
                layers.Dense(5),
                layers.Activation("softmax", dtype="float32"),  # leaves the autocast region
            ]
        )
    finally:
        tapefit.mixed_precision.set_global_policy("float32")
    model.compile(
        optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=True
    )
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 8, 8, 3), dtype=np.float32), rng.integers(0, 5, 32)
    counters.clear()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    # Two graphs: up to the loss, and from after backward() (which dynamo does not trace) on.
    assert counters["stats"]["unique_graphs"] == 2
    (reason,) = counters["graph_break"]  # one reason, whatever torch's wording
    assert "backward" in reason
