"""Weight constraints in layers against Keras 3 (torch backend): same initial weights, same data, same
SGD steps -> same constrained weights, through ``fit`` and through a GradientTape loop; plus configs
and save/load of a constrained model."""

import json

import numpy as np
import pytest
import torch

import tapefit
from tapefit import constraints as C
from tapefit import layers
from tests.keras_parity import keras
from tests.saving._helpers import edit_config

KC = keras.constraints


def _json(config):
    return json.loads(json.dumps(config))


def _conv_models():
    def build(lib, cons, inp):
        return lib.Sequential(
            [
                inp((6, 6, 2)),
                lib.layers.Conv2D(
                    4,
                    3,
                    kernel_constraint=cons.MaxNorm(0.3, axis=[0, 1, 2]),
                    bias_constraint=cons.NonNeg(),
                ),
                lib.layers.BatchNormalization(
                    gamma_constraint=cons.MinMaxNorm(1.5, 1.8), beta_constraint=cons.NonNeg()
                ),
                lib.layers.Flatten(),
                lib.layers.Dense(2, kernel_constraint=cons.UnitNorm(), bias_constraint=cons.MaxNorm(0.05)),
            ]
        )

    return build(tapefit, C, tapefit.Input), build(keras, KC, keras.Input)


def _embedding_models():
    def build(lib, cons, inp):
        return lib.Sequential(
            [
                inp((4,), dtype="int32"),
                lib.layers.Embedding(10, 3, embeddings_constraint=cons.UnitNorm(axis=1)),
                lib.layers.Flatten(),
                lib.layers.Dense(1, kernel_constraint=cons.NonNeg(), bias_constraint=cons.MaxNorm(0.05)),
            ]
        )

    return build(tapefit, C, tapefit.Input), build(keras, KC, keras.Input)


def _check_conv_constraints(model):
    conv, bn, _, dense = model.layers
    kernel, bias = conv.get_weights()
    assert np.all(np.sqrt((kernel**2).sum((0, 1, 2))) <= 0.3 + 1e-5)
    assert np.all(bias >= 0)
    gamma, beta = bn.get_weights()[:2]
    assert 1.5 - 1e-4 <= np.linalg.norm(gamma) <= 1.8 + 1e-4
    assert np.all(beta >= 0)
    np.testing.assert_allclose(np.sqrt((dense.get_weights()[0] ** 2).sum(0)), 1.0, rtol=1e-5)
    assert np.abs(dense.get_weights()[1]).max() <= 0.05 + 1e-6


def _check_embedding_constraints(model):
    emb, _, dense = model.layers
    np.testing.assert_allclose(np.linalg.norm(emb.get_weights()[0], axis=1), 1.0, rtol=1e-5)
    assert np.all(dense.get_weights()[0] >= 0)


@pytest.mark.parametrize(
    "make,check,x,y",
    [
        (
            _conv_models,
            _check_conv_constraints,
            np.random.default_rng(0).standard_normal((24, 6, 6, 2)).astype("float32"),
            np.random.default_rng(1).standard_normal((24, 2)).astype("float32"),
        ),
        (
            _embedding_models,
            _check_embedding_constraints,
            np.random.default_rng(2).integers(0, 10, (24, 4)).astype("int32"),
            np.random.default_rng(3).standard_normal((24, 1)).astype("float32"),
        ),
    ],
    ids=["conv_bn_dense", "embedding_dense"],
)
def test_fit_keeps_constraints_after_every_step_and_matches_keras(make, check, x, y):
    ours, theirs = make()
    theirs.set_weights(ours.get_weights())
    initial = ours.get_weights()
    with pytest.raises(AssertionError):
        check(ours)  # the constraints bind: the initial weights break them
    steps = []
    checker = tapefit.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: steps.append(check(ours))
    )
    ours.compile(optimizer=tapefit.optimizers.SGD(0.1), loss="mse")
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    h1 = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[checker])
    h2 = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert len(steps) == 6
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-4, atol=1e-6)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(a, s) for a, s in zip(ours.get_weights(), initial))


def _bound(cons):
    return cons.MaxNorm(0.2, axis=[0, 1, 2])


# (layer name, kwargs built from a constraints module, input shape, integer input)
LAYER_CASES = [
    ("Dense", lambda c: dict(units=3, kernel_constraint=c.MaxNorm(0.3), bias_constraint=c.NonNeg()), (4, 5)),
    (
        "Conv1D",
        lambda c: dict(filters=3, kernel_size=2, kernel_constraint=c.MaxNorm(0.3, axis=[0, 1])),
        (2, 6, 4),
    ),
    (
        "Conv2D",
        lambda c: dict(filters=3, kernel_size=2, kernel_constraint=_bound(c), bias_constraint=c.NonNeg()),
        (2, 5, 5, 4),
    ),
    (
        "Conv2DTranspose",
        lambda c: dict(filters=3, kernel_size=2, strides=2, kernel_constraint=c.UnitNorm(axis=-1)),
        (2, 3, 3, 4),
    ),
    (
        "DepthwiseConv2D",
        lambda c: dict(kernel_size=2, depth_multiplier=2, depthwise_constraint=c.MaxNorm(0.2, axis=[0, 1])),
        (2, 5, 5, 3),
    ),
    (
        "SeparableConv2D",
        lambda c: dict(
            filters=3,
            kernel_size=2,
            depthwise_constraint=c.UnitNorm(axis=[0, 1]),
            pointwise_constraint=c.MaxNorm(0.2, axis=2),
            bias_constraint=c.NonNeg(),
        ),
        (2, 5, 5, 3),
    ),
    (
        "Embedding",
        lambda c: dict(input_dim=7, output_dim=3, embeddings_constraint=c.UnitNorm(axis=1)),
        (3, 4),
    ),
    (
        "BatchNormalization",
        lambda c: dict(gamma_constraint=c.MaxNorm(0.5), beta_constraint=c.NonNeg()),
        (6, 4),
    ),
    (
        "LayerNormalization",
        lambda c: dict(gamma_constraint=c.MinMaxNorm(0.5, 1.0, rate=0.5), beta_constraint=c.NonNeg()),
        (3, 4),
    ),
    (
        "GroupNormalization",
        lambda c: dict(groups=2, gamma_constraint=c.UnitNorm(), beta_constraint=c.NonNeg()),
        (3, 5, 4),
    ),
    (
        "PReLU",
        lambda c: dict(alpha_initializer="ones", alpha_constraint=c.MaxNorm(0.5, axis=[0, 1])),
        (3, 2, 4),
    ),
]


def _inputs(name, shape):
    rng = np.random.default_rng(7)
    if name == "Embedding":
        return rng.integers(0, 7, shape).astype("int32")
    return rng.standard_normal(shape).astype("float32")


def _keras_step(layer, x, lr):
    """One Keras SGD step on ``sum(layer(x) ** 2)``: torch autograd on Keras's torch variables, then
    Keras's own ``apply_gradients``, which applies the variables' constraints."""
    out = layer(keras.ops.convert_to_tensor(x), training=True)
    loss = keras.ops.sum(out**2)
    variables = layer.trainable_variables
    grads = torch.autograd.grad(loss, [v.value for v in variables])
    keras.optimizers.SGD(lr).apply_gradients(zip(grads, variables))


@pytest.mark.parametrize("name,make_kwargs,shape", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_gradient_tape_step_applies_constraints_like_keras(name, make_kwargs, shape):
    ours = getattr(layers, name)(**make_kwargs(C))
    theirs = getattr(keras.layers, name)(**make_kwargs(KC))
    x = _inputs(name, shape)
    ours(torch.from_numpy(x))
    theirs(x)
    theirs.set_weights(ours.get_weights())
    optimizer = tapefit.optimizers.SGD(0.5)
    for _ in range(2):
        with tapefit.GradientTape() as tape:
            loss = (ours(torch.from_numpy(x), training=True) ** 2).sum()
        grads = tape.gradient(loss, ours.trainable_weights)
        optimizer.apply_gradients(zip(grads, ours.trainable_weights))
        _keras_step(theirs, x, 0.5)
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)
    assert any(getattr(w, "constraint", None) is not None for w in ours.trainable_weights)


@pytest.mark.parametrize("name,make_kwargs,shape", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_config_carries_constraints_like_keras(name, make_kwargs, shape):
    ours = getattr(layers, name)(**make_kwargs(C))
    theirs = getattr(keras.layers, name)(**make_kwargs(KC))
    config, keras_config = ours.get_config(), theirs.get_config()
    keys = [k for k in keras_config if k.endswith("_constraint")]
    assert keys and set(keys) == {k for k in config if k.endswith("_constraint")}
    for key in keys:
        if keras_config[key] is None:
            assert config[key] is None, key
            continue
        assert config[key]["class_name"] == keras_config[key]["class_name"], key
        assert config[key]["config"] == keras_config[key]["config"], key
    clone = type(ours).from_config(json.loads(json.dumps(config)))
    assert _json(clone.get_config()) == _json(config)
    for key in keys:
        assert type(getattr(clone, key)) is type(getattr(ours, key))


def test_constraint_is_reachable_on_the_weight():
    dense = layers.Dense(2, kernel_constraint="non_neg")
    dense.build((None, 3))
    assert isinstance(dense.kernel_constraint, C.NonNeg)
    assert dense.kernel.constraint is dense.kernel_constraint  # (in, out) storage: no permutation
    assert getattr(dense.bias, "constraint", None) is None
    conv = layers.Conv2D(2, 3, kernel_constraint=C.UnitNorm(axis=[0, 1, 2]))
    conv.build((None, 5, 5, 3))
    assert conv.kernel.constraint.constraint is conv.kernel_constraint


def test_add_weight_constraint_on_a_custom_layer():
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", constraint="non_neg")

        def call(self, x):
            return x * self.w

    layer = Scale()
    layer(torch.ones(2, 3))
    tapefit.optimizers.SGD(1.0).apply_gradients([(torch.tensor([3.0, -1.0, 0.5]), layer.w)])
    torch.testing.assert_close(layer.w.detach(), torch.tensor([0.0, 2.0, 0.5]))
    with pytest.raises(ValueError, match="Unknown constraint"):
        Scale().add_weight(shape=(2,), constraint="nonneg")


def test_constrained_model_saves_and_loads_with_its_constraints(tmp_path):
    model, _ = _conv_models()
    x = np.random.default_rng(0).standard_normal((8, 6, 6, 2)).astype("float32")
    y = np.random.default_rng(1).standard_normal((8, 2)).astype("float32")
    path = tmp_path / "constrained.tapefit"
    model.save(path)
    loaded = tapefit.models.load_model(path)
    assert [_json(layer.get_config()) for layer in loaded.layers] == [
        _json(layer.get_config()) for layer in model.layers
    ]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    conv = loaded.layers[0]
    assert isinstance(conv.kernel_constraint, C.MaxNorm) and conv.kernel_constraint.axis == [0, 1, 2]
    assert conv.kernel.constraint.constraint is conv.kernel_constraint
    loaded.compile(optimizer=tapefit.optimizers.SGD(0.1), loss="mse")
    loaded.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    _check_conv_constraints(loaded)

    def poison(config):
        config["model"]["config"]["layers"][0]["config"]["kernel_constraint"] = {
            "module": "os",
            "class_name": "system",
            "config": {},
        }

    edit_config(path, poison)
    with pytest.raises(ValueError, match="register_serializable"):
        tapefit.models.load_model(path, safe_mode=False)
