"""Labels checked against the compiled loss on the host: all of y up front, or each batch before
its copy to an accelerator (tapefit/trainers/target_check.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit.trainers import data_adapters
from tapefit.trainers.target_check import label_checker


def _model(units):
    model = tapefit.Sequential([tapefit.Input((4,)), tapefit.layers.Dense(units)])
    model.compile(optimizer="sgd", loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_bad_batch_is_refused_before_it_is_copied(monkeypatch):
    model = _model(3)
    x = np.zeros((8, 4), "float32")
    y = np.array([0, 1, 2, 0, 1, 2, 9, 0])
    ds = tapefit.data.Dataset.from_tensor_slices((x, y)).batch(4)
    adapter = data_adapters.IterableAdapter(ds, None, torch.device("cpu"))
    adapter.host_check = label_checker(model, x)
    copied = []
    real = data_adapters.to_device
    monkeypatch.setattr(data_adapters, "to_device", lambda b, d: copied.append(b) or real(b, d))
    batches = adapter.epoch()
    next(batches)
    with pytest.raises(ValueError, match=r"Sparse label 9 is out of range for 3 classes"):
        next(batches)
    assert len(copied) == 1  # the bad batch never reached the device


def test_the_checker_follows_the_model_output_and_the_loss():
    check = label_checker(_model(10), np.zeros((2, 4), "float32"))
    check(torch.tensor([0, 9, 3]))  # fine for 10 classes
    with pytest.raises(ValueError, match="Sparse label 10"):
        check(torch.tensor([10]))
    multi = tapefit.Sequential([tapefit.Input((4,)), tapefit.layers.Dense(2)])
    multi.compile(optimizer="sgd", loss=["mse"])
    assert label_checker(multi, np.zeros((1, 4), "float32")) is None  # a list of losses: checked per output
