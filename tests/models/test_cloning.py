"""``clone_model`` and the compile config: new layers and weights, same architecture and compile
arguments, Keras's options (clone_function, call_function, input_tensors, recursive)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers as L
from tapefit.models import clone_model
from tests.keras_parity import keras


def _sequential():
    return tapefit.Sequential(
        [tapefit.Input((4,), name="features"), L.Dense(8, activation="relu"), L.Dropout(0.2), L.Dense(3)],
        name="stack",
    )


def _shared_functional():
    a, b = tapefit.Input((4,), name="left"), tapefit.Input((4,), name="right")
    shared = L.Dense(5, name="shared")
    merged = L.Concatenate(name="join")([shared(a), shared(b)])
    return tapefit.Model([a, b], L.Dense(2, name="head")(merged), name="siamese")


def _assert_new_weights_same_function(clone, model, x):
    assert all(c is not m for c, m in zip(clone.layers, model.layers) if not isinstance(m, L.InputLayer))
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    kernels = [w for w in model.get_weights() if w.ndim == 2]
    assert not any(
        np.allclose(c, m) for c, m in zip([w for w in clone.get_weights() if w.ndim == 2], kernels)
    )
    clone.set_weights(model.get_weights())
    torch.testing.assert_close(clone(x), model(x))


def test_sequential_clone_has_new_layers_and_the_same_architecture():
    model = _sequential()
    clone = clone_model(model)
    assert isinstance(clone, tapefit.Sequential) and clone.name == "stack"
    assert clone.get_config() == model.get_config()
    _assert_new_weights_same_function(clone, model, torch.randn(3, 4))


def test_functional_clone_clones_a_shared_layer_once():
    model = _shared_functional()
    clone = clone_model(model)
    assert clone.name == "siamese"
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert clone.get_config()["layers"] == model.get_config()["layers"]
    _assert_new_weights_same_function(clone, model, [torch.randn(3, 4), torch.randn(3, 4)])


def test_the_clone_is_compiled_like_the_model_with_a_new_optimizer():
    model = tapefit.Sequential([tapefit.Input((4,)), L.Dense(8, activation="relu"), L.Dense(3)])
    model.compile(
        tapefit.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    clone = clone_model(model)
    assert clone.compiled and clone.optimizer is not model.optimizer
    assert clone.get_compile_config() == model.get_compile_config()
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    clone.set_weights(model.get_weights())
    for m in (model, clone):
        m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(clone.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not clone_model(_sequential()).compiled


def test_compile_config_has_keras_keys_and_round_trips():
    model = _sequential()
    assert model.get_compile_config() is None
    model.compile("adam", "mse", metrics=["mae"], steps_per_execution=2, jit_compile=False)
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    theirs.compile("adam", "mse", metrics=["mae"])
    config = model.get_compile_config()
    assert set(config) == set(theirs.get_compile_config())
    assert (config["loss"], config["metrics"], config["steps_per_execution"]) == ("mse", ["mae"], 2)
    other = _sequential()
    other.compile_from_config(config)
    assert other.get_compile_config() == config
    assert other.optimizer.built
    with pytest.raises(ValueError, match="needs a dict from get_compile_config"):
        other.compile_from_config({"loss": "mse"})


def test_an_unsavable_loss_leaves_the_clone_uncompiled_with_a_warning():
    model = _sequential()
    model.compile("adam", loss=lambda y, p: (p - y).pow(2).mean())
    with pytest.warns(UserWarning, match="compile the clone yourself"):
        clone = clone_model(model)
    assert not clone.compiled


def test_clone_function_and_call_function_as_in_keras():
    model = _shared_functional()
    seen = []

    def clone_function(layer):
        seen.append(layer.name)
        config = layer.get_config()
        if isinstance(layer, L.Dense):
            config["units"] = config["units"] * 2 if layer.name == "shared" else config["units"]
        return type(layer).from_config(config)

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        return L.Activation("relu")(out) if layer.name == "shared" else out

    clone = clone_model(model, clone_function=clone_function, call_function=call_function)
    assert seen == ["shared", "join", "head"]  # the shared layer once, no Input
    assert clone.get_layer("shared").units == 10
    assert sum(isinstance(layer, L.Activation) for layer in clone.layers) == 2
    out = clone([torch.randn(3, 4), torch.randn(3, 4)])
    assert out.shape == (3, 2)


def test_input_tensors_replace_the_inputs():
    model = _shared_functional()
    a, b = tapefit.Input((4,), name="a2"), tapefit.Input((4,), name="b2")
    clone = clone_model(model, input_tensors=[a, b])
    assert clone.inputs == [a, b]
    seq = clone_model(_sequential(), input_tensors=tapefit.Input((4,), batch_size=5))
    assert seq.input_shape == (5, 4)
    with pytest.raises(ValueError, match="input_tensors must match the model's 2 input"):
        clone_model(model, input_tensors=[a])
    with pytest.raises(ValueError, match="must be tapefit.Input"):
        clone_model(model, input_tensors=[a, L.Dense(4)(b)])


def test_recursive_clones_nested_models_layer_by_layer():
    inner = tapefit.Sequential([tapefit.Input((4,)), L.Dense(4, name="inner_dense")], name="inner")
    x = tapefit.Input((4,))
    model = tapefit.Model(x, L.Dense(2, name="outer_dense")(inner(x)))
    for recursive, expected in ((False, ["inner", "outer_dense"]), (True, ["inner_dense", "outer_dense"])):
        seen = []

        def clone_function(layer, seen=seen):
            seen.append(layer.name)
            return type(layer).from_config(layer.get_config())

        clone = clone_model(model, clone_function=clone_function, recursive=recursive)
        assert seen == expected
        assert clone.get_layer("inner") is not inner
        _assert_new_weights_same_function(clone, model, torch.randn(2, 4))


class _Subclassed(tapefit.Model):
    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = L.Dense(units)

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_subclassed_models_are_cloned_from_their_config_and_refuse_layer_options():
    model = _Subclassed(units=5, name="sub")
    clone = clone_model(model)
    assert type(clone) is _Subclassed and clone.units == 5 and clone.name == "sub"
    with pytest.raises(ValueError, match="subclassed model, which is cloned from its get_config"):
        clone_model(model, clone_function=lambda layer: layer)
    with pytest.raises(ValueError, match="call_function applies to functional models only"):
        clone_model(_sequential(), call_function=lambda layer, *a, **k: layer(*a, **k))
