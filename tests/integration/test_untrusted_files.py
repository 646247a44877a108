"""A crafted pickle, whose ``__reduce__`` runs a shell command, given to every loader tapefit has:
each one refuses it with an error, and the command never runs (the marker file never appears)."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers


class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _raw_pickle(marker) -> bytes:
    return pickle.dumps({"d.kernel": _Exploit(marker), "d.bias": _Exploit(marker)}, protocol=2)


def _torch_pickle(marker) -> bytes:
    """The same payload in torch.save's own zip format (data.pkl inside)."""
    buf = io.BytesIO()
    torch.save({"d.kernel": _Exploit(marker)}, buf)
    return buf.getvalue()


PAYLOADS = {"pickle": _raw_pickle, "torch.save": _torch_pickle}


def _model():
    return tapefit.Sequential([tapefit.Input((3,)), layers.Dense(2, name="d")])


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "the pickled command ran"


def _assert_never_ran(marker):
    assert marker.parent.exists() and not marker.exists()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin"])
def test_load_weights(tmp_path, marker, payload, suffix):
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(PAYLOADS[payload](marker))
    model = _model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=rf"evil\{suffix}: refused .*weights_only=True"):
        model.load_weights(path)
    _assert_never_ran(marker)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_load_model_given_a_pickle_as_the_file(tmp_path, marker, payload):
    path = tmp_path / "evil.tapefit"
    path.write_bytes(PAYLOADS[payload](marker))
    with pytest.raises(ValueError, match=r"evil\.tapefit: not a tapefit model file"):
        tapefit.models.load_model(path, safe_mode=False)
    _assert_never_ran(marker)


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("member", ["config.json", "model.weights.safetensors", "optimizer.safetensors"])
def test_load_model_given_a_pickle_as_a_member(tmp_path, marker, payload, member):
    model = _model()
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 3), "float32"), np.ones((4, 2), "float32"), epochs=1, verbose=0)
    path = tmp_path / "m.tapefit"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    assert member in members
    members[member] = PAYLOADS[payload](marker)
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    with pytest.raises(ValueError, match=rf"m\.tapefit.*{member.split('.')[0]}"):
        tapefit.models.load_model(path, safe_mode=False)
    _assert_never_ran(marker)


def test_load_model_given_a_pickled_member_beside_the_real_ones(tmp_path, marker):
    path = tmp_path / "m.tapefit"
    _model().save(path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("model.pkl", _raw_pickle(marker))
        zf.writestr("data.pkl", _raw_pickle(marker))
    loaded = tapefit.models.load_model(path)  # unknown members are never read
    assert [w.shape for w in loaded.get_weights()] == [(3, 2), (2,)]
    _assert_never_ran(marker)


def test_cifar100_loader(tmp_path, marker, monkeypatch):
    from tapefit.datasets import cifar100

    monkeypatch.setenv("TAPEFIT_HOME", str(tmp_path / "home"))
    folder = tmp_path / "home" / "datasets" / "cifar-100-python"
    folder.mkdir(parents=True)
    evil = pickle.dumps({b"data": _Exploit(marker), b"fine_labels": [0]}, protocol=2)
    (folder / "train").write_bytes(evil)
    (folder / "test").write_bytes(evil)
    with pytest.raises(pickle.UnpicklingError, match="Refusing to load the global"):
        cifar100.load_data()
    _assert_never_ran(marker)


def test_mnist_loader(tmp_path, marker):
    from tapefit.datasets import DatasetFormatError, mnist

    path = tmp_path / "mnist.npz"
    path.write_bytes(_raw_pickle(marker))
    with pytest.raises(DatasetFormatError, match=r"mnist\.npz"):
        mnist.load_data(str(path))
    buf = io.BytesIO()
    evil = np.array([_Exploit(marker)], dtype=object)
    np.savez(buf, x_train=evil, y_train=evil, x_test=evil, y_test=evil)
    path.write_bytes(buf.getvalue())
    with pytest.raises(DatasetFormatError, match=r"mnist\.npz.*allow_pickle"):
        mnist.load_data(str(path))
    _assert_never_ran(marker)


def test_keras_h5_loader(tmp_path, marker):
    from tapefit.applications._keras_h5 import load_keras_h5

    path = tmp_path / "evil.weights.h5"
    path.write_bytes(_raw_pickle(marker))
    with pytest.raises(ValueError, match=r"evil\.weights\.h5 cannot be read"):
        load_keras_h5(_model(), path)
    _assert_never_ran(marker)


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_backup_and_restore(tmp_path, marker, payload):
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    name = "backup-e00001-b0000000.safetensors"
    (backup_dir / name).write_bytes(PAYLOADS[payload](marker))
    (backup_dir / "backup-index.json").write_text(
        json.dumps({"format": "tapefit.backup-index", "latest": name, "previous": None})
    )
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 3), "float32"), np.ones((4, 2), "float32")
    before = model.get_weights()
    with (
        pytest.warns(UserWarning, match=name),
        pytest.raises(RuntimeError, match="no backup .* could be read"),
    ):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[tapefit.callbacks.BackupAndRestore(backup_dir)])
    _assert_never_ran(marker)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
