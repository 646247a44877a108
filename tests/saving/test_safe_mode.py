"""``load_model(safe_mode=True)`` refuses Lambda layers wherever they sit, and nothing in a file,
nor a load running in another thread, can switch safe mode off."""

import threading
import zipfile

import pytest
import torch

import tapefit
from tapefit import layers
from tapefit.saving import SafeModeError, serialization
from tests.saving._helpers import edit_config


@tapefit.saving.register_serializable(package="safe_mode_tests")
def doubled(x):
    return 2 * x


def _lambda_model():
    inp = tapefit.Input((3,), name="x")
    return tapefit.Model(inp, layers.Dense(2, name="d")(layers.Lambda(doubled, name="lam")(inp)))


def _nested_lambda_model():
    model = tapefit.Sequential([_lambda_model(), layers.Dense(1, name="head")])
    model.build((None, 3))
    return model


@pytest.mark.parametrize("build", [_lambda_model, _nested_lambda_model], ids=["top_level", "in_sub_model"])
def test_lambda_layers_are_refused_in_safe_mode(tmp_path, build):
    model = build()
    path = tmp_path / "lam.tapefit"
    model.save(path)
    with pytest.raises(SafeModeError, match="safe_mode"):
        tapefit.models.load_model(path)
    with pytest.raises(SafeModeError, match="safe_mode=True"):
        tapefit.models.load_model(path, safe_mode=True)
    loaded = tapefit.models.load_model(path, safe_mode=False)  # the user's decision, not the file's
    x = torch.randn(4, 3)
    torch.testing.assert_close(loaded(x), model(x))


def _everywhere_false(config):
    """``"safe_mode": false`` at the top, in the model config, and in every model and Lambda entry."""
    config["safe_mode"] = False

    def poison(entry):
        entry["safe_mode"] = False
        inner = entry["config"]
        if entry["class_name"] in ("Functional", "Model", "Sequential", "Lambda"):
            inner["safe_mode"] = False
        for sub in inner.get("layers", []):
            poison(sub)

    poison(config["model"])


@pytest.mark.parametrize("build", [_lambda_model, _nested_lambda_model], ids=["top_level", "in_sub_model"])
def test_a_file_cannot_switch_safe_mode_off(tmp_path, build):
    path = tmp_path / "lam.tapefit"
    build().save(path)
    edit_config(path, lambda config: config.update(safe_mode=False))
    with pytest.raises(SafeModeError, match="safe_mode"):
        tapefit.models.load_model(path)
    edit_config(path, _everywhere_false)
    with zipfile.ZipFile(path) as zf:
        text = zf.read("config.json").decode()
    assert text.count('"safe_mode": false') >= 5  # the file, the model(s) and the Lambda all say so
    with pytest.raises(SafeModeError, match="safe_mode"):
        tapefit.models.load_model(path)


def test_a_lambda_subclass_is_refused_too(tmp_path):
    @tapefit.saving.register_serializable(package="safe_mode_tests")
    class Doubling(layers.Lambda):
        def __init__(self, function=doubled, **kwargs):
            super().__init__(function, **kwargs)

    inp = tapefit.Input((3,))
    model = tapefit.Model(inp, Doubling()(inp))
    model.save(tmp_path / "sub.tapefit")
    with pytest.raises(SafeModeError, match="safe_mode"):
        tapefit.models.load_model(tmp_path / "sub.tapefit")


_mid_load_hooks = []


@tapefit.saving.register_serializable(package="safe_mode_tests")
class Rendezvous(layers.Layer):
    """An identity layer whose from_config runs a test hook, in the middle of a load."""

    def call(self, x):
        return x

    @classmethod
    def from_config(cls, config):
        for hook in _mid_load_hooks:
            hook()
        return cls(**config)


def test_safe_mode_off_in_another_thread_does_not_leak_into_a_load(tmp_path):
    inp = tapefit.Input((3,))
    model = tapefit.Model(inp, layers.Lambda(doubled)(Rendezvous()(inp)))
    model.save(tmp_path / "lam.tapefit")
    inside, release = threading.Event(), threading.Event()

    def unsafe_load_elsewhere():
        with serialization.safe_mode_scope(False):
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=unsafe_load_elsewhere)

    def switch_off_elsewhere():  # the Lambda comes next in this load
        worker.start()
        assert inside.wait(10)

    _mid_load_hooks.append(switch_off_elsewhere)
    try:
        with pytest.raises(SafeModeError, match="safe_mode"):
            tapefit.models.load_model(tmp_path / "lam.tapefit")
    finally:
        _mid_load_hooks.clear()
        release.set()
        worker.join()


def test_unregistered_class_error_names_safe_mode_and_registration(tmp_path):
    model = tapefit.Sequential([tapefit.Input((3,)), layers.Dense(2)])
    model.save(tmp_path / "m.tapefit")

    def rename(config):
        config["model"]["config"]["layers"][0]["class_name"] = "someone_else>Mystery"

    edit_config(tmp_path / "m.tapefit", rename)
    for safe_mode in (True, False):
        with pytest.raises(ValueError) as info:
            tapefit.models.load_model(tmp_path / "m.tapefit", safe_mode=safe_mode)
        message = str(info.value)
        assert "'someone_else>Mystery'" in message
        assert "safe_mode" in message and "register_serializable" in message
