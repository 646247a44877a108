"""``load_keras_h5`` on damaged files: an error naming the file, and the model left as it was."""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest

import tapefit
from tapefit.applications._keras_h5 import load_keras_h5


def _model() -> tapefit.Model:
    return tapefit.Sequential([tapefit.Input((4,)), tapefit.layers.Dense(3)])


def _write_keras3_h5(path, model) -> None:
    """The Keras 3 ``.weights.h5`` layout: ``layers/<snake_case class>/vars/<i>``."""
    with h5py.File(path, "w") as f:
        group = f.create_group("layers/dense/vars")
        for i, w in enumerate(model.get_weights()):
            group.create_dataset(str(i), data=w + 1.0)


def test_a_valid_file_loads(tmp_path) -> None:
    model = _model()
    _write_keras3_h5(tmp_path / "w.weights.h5", model)
    expected = [w + 1.0 for w in model.get_weights()]
    load_keras_h5(model, tmp_path / "w.weights.h5")
    for a, b in zip(expected, model.get_weights()):
        np.testing.assert_array_equal(a, b)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("damage", ["junk", "truncated", "pickle", "empty"])
def test_damaged_files_name_the_file_and_load_nothing(tmp_path, damage: str) -> None:
    model = _model()
    path = tmp_path / "bad.weights.h5"
    marker = tmp_path / "pwned"
    if damage == "junk":
        path.write_bytes(b"definitely not HDF5 " * 100)
    elif damage == "truncated":
        _write_keras3_h5(path, model)
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "pickle":
        path.write_bytes(pickle.dumps({"layers": _Exploit(marker)}))
    else:
        path.write_bytes(b"")
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"bad\.weights\.h5 .*(cannot be read|corrupted).*nothing was load"):
        load_keras_h5(model, path)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not marker.exists()
