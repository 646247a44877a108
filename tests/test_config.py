"""tapefit.config: the determinism switch and cuDNN autotuning set the torch knobs they document."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import tapefit
from tapefit import config


def test_enable_op_determinism_sets_torch_deterministic_kernels(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    try:
        tapefit.config.enable_op_determinism()
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]


@pytest.fixture
def cudnn_flags():
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, config.cudnn_autotune())
    torch.backends.cudnn.benchmark = torch.backends.cudnn.deterministic = False
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[:2]
    config.set_cudnn_autotune(before[2])


def test_cudnn_autotuning_is_turned_on_for_cuda_runs_only(cudnn_flags):
    assert config.cudnn_autotune()  # TensorFlow's default
    config._autotune_for(torch.device("cpu"))
    assert not torch.backends.cudnn.benchmark
    config._autotune_for(torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark


def test_cudnn_autotuning_yields_to_determinism_and_to_the_user(cudnn_flags):
    torch.backends.cudnn.deterministic = True
    config._autotune_for(torch.device("cuda"))
    assert not torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic = False
    config._autotune_for(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark
    config.set_cudnn_autotune(False)  # puts back the flag tapefit changed...
    assert not torch.backends.cudnn.benchmark
    config._autotune_for(torch.device("cuda"))
    assert not torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # ...and leaves the user's own setting alone
    config.set_cudnn_autotune(False)
    assert torch.backends.cudnn.benchmark
    with pytest.raises(TypeError, match="True or False"):
        config.set_cudnn_autotune("yes")


def test_fit_evaluate_and_predict_ask_for_autotuning_on_their_device(monkeypatch):
    seen = []
    monkeypatch.setattr(config, "_autotune_for", seen.append)
    model = tapefit.Sequential([tapefit.Input((3,)), tapefit.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32)
    model.fit(x, y, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert seen == [torch.device("cpu")] * 3
