"""Deserialisation resolves names only from tapefit's tables, ``custom_objects`` and the registry:
a config naming ``os.system``, ``builtins.exec`` or any tapefit module path is refused, never imported."""

import numpy as np
import pytest
import torch

import tapefit
from tapefit import activations, initializers, layers, losses, metrics, optimizers, regularizers
from tapefit.optimizers import schedules
from tapefit.saving import serialization
from tests.saving._helpers import edit_config

FOREIGN = [
    ("tapefit.datasets._download", "download"),
    ("tapefit.demo", "main"),
    ("os", "system"),
    ("builtins", "exec"),
]


@pytest.mark.parametrize(("module", "name"), FOREIGN)
def test_metric_function_config_naming_a_module_path_is_refused(module, name):
    config = {"module": module, "class_name": "function", "config": name, "registered_name": name}
    with pytest.raises(ValueError) as info:
        metrics.deserialize(config)
    message = str(info.value)
    assert f"{module}.{name}" in message  # names the unknown object
    assert "register_serializable" in message and "custom_objects" in message  # and how to register it
    wrapper = {"class_name": "MeanMetricWrapper", "config": {"name": "m", "fn": config}}
    with pytest.raises(ValueError, match="register_serializable"):
        metrics.deserialize(wrapper)


def _save_compiled(tmp_path, metric):
    model = tapefit.Sequential([tapefit.Input((3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", metrics=[metric])
    path = tmp_path / "m.tapefit"
    model.save(path)
    return model, path


def test_a_saved_compile_config_cannot_name_a_foreign_metric_function(tmp_path):
    _, path = _save_compiled(tmp_path, tapefit.metrics.binary_accuracy)

    def poison(config):
        config["compile"]["metrics"] = [
            {"module": "tapefit.datasets._download", "class_name": "function", "config": "download"}
        ]

    edit_config(path, poison)
    with pytest.raises(ValueError, match=r"tapefit\.datasets\._download\.download"):
        tapefit.models.load_model(path, safe_mode=False)


def test_tapefit_loss_functions_and_registered_functions_still_load_as_metrics(tmp_path):
    model, path = _save_compiled(tmp_path, tapefit.losses.mean_squared_error)
    loaded = tapefit.models.load_model(path)
    assert loaded._compile_config["metrics"] == [tapefit.losses.mean_squared_error]

    @tapefit.saving.register_serializable(package="allowlist_tests")
    def halved_error(y_true, y_pred):
        return 0.5 * (y_true - y_pred).abs()

    config = metrics.serialize(halved_error)
    assert config["config"] == "allowlist_tests>halved_error"
    assert metrics.deserialize(config) is halved_error
    model, path = _save_compiled(tmp_path, halved_error)
    loaded = tapefit.models.load_model(path)
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    loaded.set_weights(model.get_weights())
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True)
    )


def _configs(module, name):
    dotted = f"{module}.{name}"
    yield {"module": module, "class_name": name, "config": {}, "registered_name": name}
    yield {"module": module, "class_name": dotted, "config": {}}
    yield {"module": module, "class_name": "function", "config": name, "registered_name": name}
    yield {"module": module, "class_name": "function", "config": dotted}
    yield dotted


DESERIALIZERS = {
    "losses": losses.deserialize,
    "activations": activations.deserialize,
    "initializers": initializers.deserialize,
    "regularizers": regularizers.deserialize,
    "optimizers": optimizers.deserialize,
    "schedules": schedules.deserialize,
    "metrics": metrics.deserialize,
    "layers (safe_mode=False)": lambda config: serialization.deserialize_layer(config, safe_mode=False),
}


@pytest.mark.parametrize("kind", sorted(DESERIALIZERS))
@pytest.mark.parametrize(("module", "name"), FOREIGN)
def test_every_deserializer_refuses_foreign_callables(kind, module, name, monkeypatch):
    import importlib

    imported = []
    real_import = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda m, *a: imported.append(m) or real_import(m, *a))
    takes_names = kind in ("losses", "activations", "metrics", "initializers", "regularizers")
    by_class = kind not in ("losses", "activations", "metrics")  # {"class_name": "function"} is not a class
    for config in _configs(module, name):
        if isinstance(config, str) and not takes_names:
            continue
        with pytest.raises(ValueError) as info:
            DESERIALIZERS[kind](config)
        message = str(info.value)
        function_config = isinstance(config, dict) and config["class_name"] == "function"
        assert ("'function'" if by_class and function_config else name) in message, (kind, config, message)
        assert "register_serializable" in message, (kind, config, message)  # how to register one's own
    assert imported == []


def test_layer_sub_configs_naming_foreign_callables_are_refused_in_load_model(tmp_path):
    model = tapefit.Sequential([tapefit.Input((3,)), layers.Dense(2, name="d")])
    path = tmp_path / "m.tapefit"
    for key, value in [
        ("activation", "os.system"),
        ("kernel_initializer", {"module": "builtins", "class_name": "exec", "config": {}}),
        ("kernel_regularizer", {"module": "tapefit.demo", "class_name": "main", "config": {}}),
    ]:
        model.save(path)

        def poison(config, key=key, value=value):
            config["model"]["config"]["layers"][0]["config"][key] = value

        edit_config(path, poison)
        with pytest.raises(ValueError, match="register_serializable"):
            tapefit.models.load_model(path, safe_mode=False)


def test_registered_activation_round_trips_through_load_model(tmp_path):
    @tapefit.saving.register_serializable(package="allowlist_tests")
    def tripled(x):
        return 3 * x

    model = tapefit.Sequential([tapefit.Input((3,)), layers.Dense(2, activation=tripled)])
    model.save(tmp_path / "a.tapefit")
    loaded = tapefit.models.load_model(tmp_path / "a.tapefit")
    assert loaded.layers[0].activation is tripled
    x = torch.randn(4, 3)
    torch.testing.assert_close(loaded(x), model(x))


def test_registered_optimizer_and_schedule_round_trip():
    @tapefit.saving.register_serializable(package="allowlist_tests")
    class HalfSGD(optimizers.SGD):
        pass

    @tapefit.saving.register_serializable(package="allowlist_tests")
    class Flat(schedules.LearningRateSchedule):
        def __init__(self, value=0.1):
            self.value = value

        def __call__(self, step):
            return torch.as_tensor(self.value)

        def get_config(self):
            return {"value": self.value}

    opt = optimizers.deserialize(optimizers.serialize(HalfSGD(0.25)))
    assert type(opt) is HalfSGD and float(opt.learning_rate) == 0.25
    sched = schedules.deserialize(schedules.serialize(Flat(0.5)))
    assert type(sched) is Flat and sched.value == 0.5
