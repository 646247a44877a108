import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers
from tapefit.mixed_precision import DTypePolicy, LossScaleOptimizer


@pytest.fixture
def mixed_bf16():
    tapefit.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    tapefit.mixed_precision.set_global_policy("float32")


def _model():
    return tapefit.Sequential(
        [
            tapefit.Input((8, 8, 3)),
            layers.Conv2D(4, 3),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Flatten(),
            layers.Dense(3),
            layers.Activation("softmax", dtype="float32"),
        ]
    )


def test_policies_have_keras_dtypes():
    p = DTypePolicy("mixed_float16")
    assert (p.compute_dtype, p.variable_dtype, p.is_mixed) == ("float16", "float32", True)
    assert not DTypePolicy("float32").is_mixed
    with pytest.raises(ValueError, match="Unknown dtype policy"):
        DTypePolicy("mixed_int8")


def test_bf16_policy_computes_in_bf16_keeps_float32_weights_and_outputs(mixed_bf16):
    model = _model()
    seen = {}
    for layer in model.layers:
        layer.register_forward_hook(lambda mod, i, o: seen.__setitem__(mod.name, o.dtype))
    out = model(torch.randn(2, 8, 8, 3))
    assert out.dtype == torch.float32
    assert seen[model.layers[0].name] == torch.bfloat16  # the convolution ran in bfloat16
    assert seen[model.layers[-1].name] == torch.float32  # a float32-policy layer leaves autocast
    assert all(w.dtype == torch.float32 for w in model.weights)
    assert model.layers[0].compute_dtype == "bfloat16" and model.layers[0].dtype == "float32"


def test_bf16_training_on_cpu_learns_and_keeps_float32_weights(mixed_bf16):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    x = (rng.normal(0, 0.3, (96, 8, 8, 3)) + y[:, None, None, None]).astype("float32")
    model = _model()
    model.compile(
        optimizer=tapefit.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    hist = model.fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert all(w.dtype == torch.float32 for w in model.weights)


def test_layer_policy_round_trips_through_config():
    layer = layers.Dense(2, dtype="mixed_bfloat16")
    assert layer.get_config()["dtype"] == "mixed_bfloat16"
    assert layers.Dense.from_config(layer.get_config()).dtype_policy == DTypePolicy("mixed_bfloat16")


def test_loss_scale_optimizer_matches_the_plain_optimizer_on_finite_gradients():
    w1 = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    w2 = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    plain = tapefit.optimizers.SGD(0.1, momentum=0.5)  # not scale-invariant, unlike Adam
    scaled = LossScaleOptimizer(tapefit.optimizers.SGD(0.1, momentum=0.5), initial_scale=1024.0)
    for _ in range(3):
        with tapefit.GradientTape() as tape:
            loss = (w1**2).sum()
        plain.apply_gradients(zip(tape.gradient(loss, [w1]), [w1]))
        with tapefit.GradientTape() as tape:
            loss = scaled.scale_loss((w2**2).sum())
        scaled.apply_gradients(zip(tape.gradient(loss, [w2]), [w2]))
    torch.testing.assert_close(w1, w2)
    assert int(scaled.iterations) == 3


def test_loss_scale_optimizer_skips_non_finite_steps_and_adapts_the_scale():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LossScaleOptimizer(tapefit.optimizers.SGD(0.1), initial_scale=8.0, dynamic_growth_steps=2)
    opt.apply([torch.tensor([float("inf")])], [w])
    assert w.item() == 1.0 and opt.dynamic_scale == 4.0 and int(opt.iterations) == 0
    opt.apply([torch.tensor([4.0])], [w])  # unscaled: 1.0
    opt.apply([torch.tensor([4.0])], [w])
    assert w.item() == pytest.approx(0.8) and opt.dynamic_scale == 8.0
    state = opt.state_dict()
    again = LossScaleOptimizer(tapefit.optimizers.SGD(0.1))
    again.load_state_dict(state)
    assert again.dynamic_scale == 8.0


def test_compile_wraps_the_optimizer_for_float16_loss_scaling():
    tapefit.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(3), layers.Dense(2, dtype="float32")])
        model.compile(optimizer="sgd", loss="mse")
        assert isinstance(model.optimizer, LossScaleOptimizer)
        model.compile(optimizer="sgd", loss="mse", auto_scale_loss=False)
        assert not isinstance(model.optimizer, LossScaleOptimizer)
    finally:
        tapefit.mixed_precision.set_global_policy("float32")
    model = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    assert not isinstance(model.optimizer, LossScaleOptimizer)


@pytest.fixture
def mixed_f16():
    tapefit.mixed_precision.set_global_policy("mixed_float16")
    yield
    tapefit.mixed_precision.set_global_policy("float32")


def test_an_explicit_loss_scale_optimizer_compiles_trains_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    model = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(2)])
    model.compile(optimizer=LossScaleOptimizer(tapefit.optimizers.SGD(0.05), initial_scale=64.0), loss="mse")
    hist = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert model.optimizer.get_config()["initial_scale"] == 64.0  # the argument, not the current scale
    model.save(tmp_path / "m.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "m.tapefit")
    assert isinstance(loaded.optimizer, LossScaleOptimizer)
    assert loaded.optimizer.dynamic_scale == model.optimizer.dynamic_scale
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 12


def test_mixed_float16_fit_on_cpu_scales_the_loss_and_saves(mixed_f16, tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 64)
    x = (rng.normal(0, 0.3, (64, 6)) + y[:, None]).astype("float32")
    model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(16, activation="relu"), layers.Dense(3)])
    model.compile(
        optimizer=tapefit.optimizers.SGD(0.1),
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    hist = model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    assert isinstance(model.optimizer, LossScaleOptimizer) and model.optimizer.dynamic_scale > 1
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert model(torch.from_numpy(x[:2])).dtype == torch.float32  # the last layer's output leaves float16
    assert all(w.dtype == torch.float32 for w in model.weights)
    model.save(tmp_path / "f16.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "f16.tapefit")
    assert loaded.optimizer.dynamic_scale == model.optimizer.dynamic_scale


def test_a_float32_layer_after_a_mixed_layer_computes_in_float32():
    """Per-layer policies under the float32 global policy: each layer casts its floating inputs."""
    model = tapefit.Sequential(
        [tapefit.Input((3,)), layers.Dense(4, dtype="mixed_bfloat16"), layers.Dense(2)]
    )
    seen = {}
    for layer in model.layers:
        layer.register_forward_hook(lambda mod, i, o: seen.__setitem__(mod.name, (i[0].dtype, o.dtype)))
    out = model(torch.randn(2, 3))
    assert seen[model.layers[0].name][1] == torch.bfloat16
    assert seen[model.layers[1].name] == (torch.float32, torch.float32)
    assert out.dtype == torch.float32
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 3), "float32"), np.ones((8, 2), "float32"), verbose=0)  # and without hooks
    model.layers[0]._forward_hooks.clear(), model.layers[1]._forward_hooks.clear()
    assert model(torch.randn(2, 3)).dtype == torch.float32


def test_the_model_output_leaves_the_mixed_policy_in_float32(mixed_bf16):
    model = tapefit.Sequential([tapefit.Input((3,)), layers.Dense(4), layers.Dense(2)])  # no float32 layer
    assert model.layers[-1].compute_dtype == "bfloat16"
    assert model(torch.randn(2, 3)).dtype == torch.float32


def test_compile_wraps_for_a_model_whose_own_policy_is_mixed_float16():
    inp = tapefit.Input((4,))
    model = tapefit.Model(inp, layers.Dense(2)(inp), dtype="mixed_float16")  # the global policy is float32
    model.compile(optimizer="sgd", loss="mse")
    assert isinstance(model.optimizer, LossScaleOptimizer)


def test_the_scale_follows_keras_rule_step_by_step():
    """Keras: halve and reset the counter on a non-finite step; double when the counter would
    reach ``dynamic_growth_steps``. Hand-computed for growth every 3 finite steps."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LossScaleOptimizer(tapefit.optimizers.SGD(0.0), initial_scale=16.0, dynamic_growth_steps=3)
    pattern = [1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1]  # 1: finite gradient, 0: inf
    scales, counters = [], []
    for finite in pattern:
        opt.apply([torch.tensor([1.0 if finite else float("inf")])], [w])
        scales.append(float(opt.dynamic_scale))
        counters.append(int(opt.step_counter))
    assert scales == [16, 16, 32, 32, 16, 16, 16, 32, 16, 8, 8]
    assert counters == [1, 2, 0, 1, 0, 1, 2, 0, 0, 0, 1]
    assert int(opt.iterations) == pattern.count(1)
    restored = LossScaleOptimizer(tapefit.optimizers.SGD(0.0), dynamic_growth_steps=3)
    restored.load_state_dict(opt.state_dict())
    assert float(restored.dynamic_scale) == 8.0 and int(restored.step_counter) == 1


def test_a_compiled_float16_step_keeps_its_graphs_while_the_scale_moves(monkeypatch):
    """The scale lives in a device tensor: changing it does not recompile the step. The one
    recompilation allowed is the skip branch (the first non-finite step). Python numbers are
    specialised here, as torch 2.4 does by default (later versions make them dynamic)."""
    import functools

    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    tapefit.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tapefit.Sequential(
            [tapefit.Input((6,)), layers.Dense(16, activation="relu"), layers.Dense(3)]
        )
    finally:
        tapefit.mixed_precision.set_global_policy("float32")
    opt = LossScaleOptimizer(tapefit.optimizers.SGD(0.01), initial_scale=2.0**10, dynamic_growth_steps=1)
    model.compile(
        optimizer=opt, loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True
    )
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 6), dtype=np.float32), rng.integers(0, 3, 64)
    scales: list[float] = []
    record = tapefit.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: scales.append(float(opt.dynamic_scale))
    )
    torch._dynamo.reset()
    counters.clear()
    with torch._dynamo.config.patch(specialize_float=True, automatic_dynamic_shapes=False):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[record])
        graphs = counters["stats"]["unique_graphs"]
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[record])
    # About four graphs (split at backward() and at the skip decision), not one per scale value.
    assert counters["stats"]["unique_graphs"] == graphs <= 6
    assert len(set(scales)) > 5 and min(scales[8:]) < max(scales)  # it grew, overflowed and halved
    assert int(opt.iterations) < len(scales)  # some steps were skipped
    torch._dynamo.reset()


def test_several_compiled_float16_models_never_recompile(monkeypatch):
    """Each LossScaleOptimizer runs a private copy of ``apply``: the part after its skip decision
    (a graph break) is compiled per optimizer, not shared (and recompiled) across models."""
    import functools

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 6), dtype=np.float32), rng.integers(0, 3, 32)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(3):
            tapefit.mixed_precision.set_global_policy("mixed_float16")
            try:
                model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(8), layers.Dense(3)])
            finally:
                tapefit.mixed_precision.set_global_policy("float32")
            model.compile(
                optimizer=LossScaleOptimizer(tapefit.optimizers.SGD(0.01), initial_scale=8.0),
                loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=True,
            )
            model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    torch._dynamo.reset()


def test_old_state_dicts_load_and_a_counter_past_the_growth_point_grows_next():
    old_format = {
        "loss_scale/scale": torch.tensor(8.0, dtype=torch.float64),
        "loss_scale/good_steps": torch.tensor(5),
    }
    opt = LossScaleOptimizer(tapefit.optimizers.SGD(0.0), dynamic_growth_steps=2)
    old_format.update(opt.inner_optimizer.state_dict())
    opt.load_state_dict(old_format)
    assert float(opt.dynamic_scale) == 8.0 and int(opt.step_counter) == 1
    w = torch.nn.Parameter(torch.ones(1))
    opt.apply([torch.ones(1)], [w])
    assert float(opt.dynamic_scale) == 16.0 and int(opt.step_counter) == 0
    with pytest.raises(ValueError, match="dynamic_growth_steps"):
        LossScaleOptimizer(tapefit.optimizers.SGD(), dynamic_growth_steps=0)


def test_loss_scaling_works_under_a_float64_default_dtype():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        w = torch.nn.Parameter(torch.ones(1))
        opt = LossScaleOptimizer(tapefit.optimizers.SGD(0.5), initial_scale=4.0)
        opt.apply([torch.full((1,), 4.0)], [w])
    finally:
        torch.set_default_dtype(before)
    assert float(w.detach()) == 0.5
