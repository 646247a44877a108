"""tapefit.constraints against Keras 3 (torch backend): values, axes, configs, get/serialize and the
allowlist that deserialisation resolves names from."""

import importlib
import json

import numpy as np
import pytest
import torch

import tapefit
from tapefit import constraints as C
from tests.keras_parity import keras

PAIRS = [
    (C.MaxNorm(), keras.constraints.MaxNorm()),
    (C.MaxNorm(0.7, axis=1), keras.constraints.MaxNorm(0.7, axis=1)),
    (C.MaxNorm(1.5, axis=[0, 1, 2]), keras.constraints.MaxNorm(1.5, axis=[0, 1, 2])),
    (C.MaxNorm(1.0, axis=-1), keras.constraints.MaxNorm(1.0, axis=-1)),
    (C.MaxNorm(2.0, axis=None), keras.constraints.MaxNorm(2.0, axis=None)),
    (C.UnitNorm(), keras.constraints.UnitNorm()),
    (C.UnitNorm(axis=(0, 2)), keras.constraints.UnitNorm(axis=(0, 2))),
    (C.MinMaxNorm(), keras.constraints.MinMaxNorm()),
    (C.MinMaxNorm(1.2, 2.0, rate=0.3, axis=1), keras.constraints.MinMaxNorm(1.2, 2.0, rate=0.3, axis=1)),
    (C.NonNeg(), keras.constraints.NonNeg()),
    (C.Constraint(), keras.constraints.Constraint()),
]


def _weights(shape, seed=0):
    w = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    w[..., 0] = 0.0  # a zero-norm slice: epsilon keeps it at zero
    return w


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=[repr(p[0]) for p in PAIRS])
@pytest.mark.parametrize("shape", [(4, 3, 5), (3, 3, 2, 4)])
def test_values_match_keras(ours, theirs, shape):
    axis = getattr(ours, "axis", 0)
    if isinstance(axis, (list, tuple)) and max(axis) >= len(shape):
        pytest.skip("axis beyond this rank")
    w = _weights(shape)
    expected = keras.ops.convert_to_numpy(theirs(keras.ops.convert_to_tensor(w)))
    got = ours(torch.from_numpy(w))
    assert got.dtype == torch.float32 and got.shape == w.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_max_norm_bounds_only_the_long_slices_and_unit_norm_normalises():
    w = torch.tensor([[3.0, 0.3], [4.0, 0.4]])
    out = C.MaxNorm(1.0)(w)
    torch.testing.assert_close(out[:, 0], torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(out[:, 1], w[:, 1], rtol=1e-6, atol=0)  # norm 0.5 < 1: unchanged
    torch.testing.assert_close(torch.linalg.vector_norm(C.UnitNorm(axis=0)(w), dim=0), torch.ones(2))


def test_epsilon_comes_from_tapefit_config():
    w = torch.tensor([[3.0], [4.0]])
    old = tapefit.config.epsilon()
    try:
        tapefit.config.set_epsilon(1.0)
        torch.testing.assert_close(C.UnitNorm()(w), w / 6.0)
    finally:
        tapefit.config.set_epsilon(old)


def test_conv_kernel_constraint_acts_on_keras_layout():
    """A Conv2D kernel is stored (out, in, kh, kw); axis=[0, 1, 2] must still mean Keras's (kh, kw, in)."""
    layer = tapefit.layers.Conv2D(4, 3, kernel_constraint=C.MaxNorm(0.2, axis=[0, 1, 2]))
    layer.build((None, 5, 5, 2))
    kernel = layer.kernel
    assert tuple(kernel.shape) == (4, 2, 3, 3)
    keras_kernel = layer.get_weights()[0]
    expected = keras.constraints.MaxNorm(0.2, axis=[0, 1, 2])(keras.ops.convert_to_tensor(keras_kernel))
    with torch.no_grad():
        kernel.copy_(kernel.constraint(kernel))
    np.testing.assert_allclose(layer.get_weights()[0], keras.ops.convert_to_numpy(expected), rtol=1e-6)
    np.testing.assert_allclose(np.sqrt((layer.get_weights()[0] ** 2).sum((0, 1, 2))), 0.2, rtol=1e-5)
    assert kernel.constraint.constraint is layer.kernel_constraint  # the user's object stays reachable


def test_defaults_and_configs_match_keras():
    for name in ("MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "Constraint"):
        assert getattr(C, name)().get_config() == getattr(keras.constraints, name)().get_config(), name
    ours = C.MinMaxNorm(0.1, 3.0, rate=0.5, axis=[0, 1])
    theirs = keras.constraints.MinMaxNorm(0.1, 3.0, rate=0.5, axis=[0, 1])
    assert ours.get_config() == theirs.get_config()
    assert C.MinMaxNorm.from_config(ours.get_config()).get_config() == ours.get_config()


def test_public_names_and_aliases_match_keras():
    keras_names = {n for n in dir(keras.constraints) if not n.startswith("_")}
    assert keras_names <= set(C.__all__)
    for alias, cls in [
        ("max_norm", C.MaxNorm),
        ("min_max_norm", C.MinMaxNorm),
        ("non_neg", C.NonNeg),
        ("unit_norm", C.UnitNorm),
    ]:
        assert getattr(C, alias) is cls


KERAS_NAMES = [
    "Constraint",
    "constraint",
    "MaxNorm",
    "max_norm",
    "MinMaxNorm",
    "min_max_norm",
    "NonNeg",
    "non_neg",
    "UnitNorm",
    "unit_norm",
]


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_get_by_name_matches_keras(name):
    ours, theirs = C.get(name), keras.constraints.get(name)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.get_config() == theirs.get_config()


def test_get_other_identifiers():
    assert C.get(None) is None
    c = C.MaxNorm(3)
    assert C.get(c) is c
    assert isinstance(C.get(C.UnitNorm), C.UnitNorm)  # a class is instantiated, as in Keras

    def fn(w):
        return w

    assert C.get(fn) is fn
    got = C.get({"class_name": "MaxNorm", "config": {"max_value": 3, "axis": 1}})
    assert isinstance(got, C.MaxNorm) and got.get_config() == {"max_value": 3, "axis": 1}
    with pytest.raises(ValueError, match="Could not interpret constraint identifier 5"):
        C.get(5)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown constraint 'maxnorm'") as info:
        C.get("maxnorm")
    message = str(info.value)
    assert "'max_norm'" in message  # the suggestion
    for name in KERAS_NAMES:
        assert name in message


@pytest.mark.parametrize("c", [p[0] for p in PAIRS], ids=[repr(p[0]) for p in PAIRS])
def test_serialize_round_trip_through_json(c):
    config = json.loads(json.dumps(C.serialize(c)))
    assert config["class_name"] == type(c).__name__
    back = C.deserialize(config)
    assert type(back) is type(c)
    assert back.get_config() == json.loads(json.dumps(c.get_config()))
    w = torch.from_numpy(_weights((3, 4, 2)))
    torch.testing.assert_close(back(w), c(w))


def test_deserialize_reads_keras_configs_and_names():
    keras_config = keras.constraints.serialize(keras.constraints.MaxNorm(1.5, axis=[0, 1]))
    got = C.deserialize(json.loads(json.dumps(keras_config)))
    assert isinstance(got, C.MaxNorm) and got.get_config() == {"max_value": 1.5, "axis": [0, 1]}
    assert isinstance(C.deserialize("non_neg"), C.NonNeg)


FOREIGN = [
    {"module": "os", "class_name": "system", "config": {}},
    {"module": "builtins", "class_name": "builtins.exec", "config": {}},
    {"module": "os", "class_name": "function", "config": "os.system"},
    {"module": "tapefit.demo", "class_name": "function", "config": "tapefit.demo.main"},
    "os.system",
]


@pytest.mark.parametrize("config", FOREIGN, ids=str)
def test_deserialize_resolves_from_the_allowlist_only(config, monkeypatch):
    imported = []
    real_import = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda m, *a: imported.append(m) or real_import(m, *a))
    with pytest.raises(ValueError, match="register_serializable"):
        C.deserialize(config)
    assert imported == []


def test_deserialize_refuses_allowlisted_non_constraints():
    @tapefit.saving.register_serializable(package="constraint_tests")
    class NotAConstraint:
        def __init__(self):
            raise AssertionError("must not be built")

    with pytest.raises(ValueError, match="not a constraint class"):
        C.deserialize({"class_name": "constraint_tests>NotAConstraint", "config": {}})
    with pytest.raises(ValueError, match="'config' must be a dict"):
        C.deserialize({"class_name": "MaxNorm", "config": "2"})
    with pytest.raises(ValueError, match="class_name"):
        C.deserialize({"config": {}})


def test_custom_constraints_need_registration():
    class Clip(C.Constraint):
        def __call__(self, w):
            return w.clamp(-1, 1)

    with pytest.raises(ValueError, match="register_serializable"):
        C.serialize(Clip())
    with pytest.raises(ValueError, match="register_serializable"):
        C.serialize(lambda w: w)

    registered = tapefit.saving.register_serializable(package="constraint_tests")(Clip)
    back = C.deserialize(json.loads(json.dumps(C.serialize(registered()))))
    assert type(back) is registered

    @tapefit.saving.register_serializable(package="constraint_tests")
    def halve(w):
        return w / 2

    config = C.serialize(halve)
    assert config == {"class_name": "function", "config": "constraint_tests>halve"}
    assert C.deserialize(json.loads(json.dumps(config))) is halve
