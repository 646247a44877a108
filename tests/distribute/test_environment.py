"""Reading the launcher's environment, joining the group, the strategy objects (one process)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
import torch.distributed.fsdp

import tapefit
from tapefit import distribute
from tapefit.callbacks.callback import _is_chief
from tapefit.distribute import environment, fsdp, reduction, sharding, strategy


def test_one_process_is_rank_zero_of_one():
    assert (distribute.rank(), distribute.world_size(), distribute.local_rank()) == (0, 1, 0)
    assert distribute.is_chief() and _is_chief()
    assert not distribute.is_distributed() and not distribute.initialize()
    assert (
        distribute.device() == torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    )


def test_rank_and_world_come_from_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (distribute.rank(), distribute.world_size(), distribute.local_rank()) == (3, 4, 1)
    assert environment.launched_distributed()
    assert not distribute.is_chief() and not _is_chief()  # callbacks neither print nor write


def test_initialize_names_what_the_launcher_did_not_set(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(
        RuntimeError, match="MASTER_ADDR, MASTER_PORT is not: launch the script with torchrun"
    ):
        distribute.initialize()


def _pretend_gpus(monkeypatch, count):
    """CUDA with ``count`` devices, as far as tapefit's device choice can tell; records the calls."""
    calls = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("set_device", d))
    monkeypatch.setattr(tapefit.config, "set_device", lambda d: calls.setdefault("config_device", d))
    def init_process_group(backend, timeout, device_id):
        calls.update(backend=backend, timeout=timeout, device_id=device_id)

    monkeypatch.setattr(torch.distributed, "init_process_group", init_process_group)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr("tapefit.distribute.failures.install_failure_report", lambda: None)
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(name, value)
    return calls


def test_with_gpus_each_rank_takes_its_local_gpu_and_nccl(monkeypatch):
    calls = _pretend_gpus(monkeypatch, count=2)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("TAPEFIT_DIST_TIMEOUT", "30")
    assert distribute.initialize() is True
    cuda1 = torch.device("cuda", 1)
    assert calls["backend"] == "nccl" and calls["device_id"] == cuda1
    assert calls["set_device"] == cuda1 and calls["config_device"] == cuda1
    assert calls["timeout"].total_seconds() == 30


def test_the_group_made_by_initialize_is_torn_down_at_a_clean_exit_only(monkeypatch):
    from tapefit.distribute import failures

    _pretend_gpus(monkeypatch, count=2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    exits, destroyed = [], []
    monkeypatch.setattr(environment.atexit, "register", exits.append)
    assert distribute.initialize() is True
    assert exits == [environment._leave_group]
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: destroyed.append(True))
    environment._leave_group()
    assert destroyed == [True]
    monkeypatch.setattr(failures, "_uncaught", True)  # an error escaped: a peer may still wait
    environment._leave_group()
    monkeypatch.setattr(failures, "_uncaught", False)
    monkeypatch.setattr(failures, "_reported", "rank 1 failed: ValueError: x")
    environment._leave_group()
    assert destroyed == [True]


def test_more_processes_than_gpus_on_a_node_is_named(monkeypatch):
    _pretend_gpus(monkeypatch, count=2)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(RuntimeError, match=r"LOCAL_RANK=2 but this node has 2 GPU\(s\).*--nproc_per_node=2"):
        distribute.initialize()


def test_bad_environment_values_are_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' must be an integer"):
        distribute.world_size()
    monkeypatch.setenv("TAPEFIT_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TAPEFIT_DIST_TIMEOUT='soon' must be a number of seconds"):
        environment.timeout_seconds()


def test_collective_timeout_default_and_override(monkeypatch):
    monkeypatch.delenv("TAPEFIT_DIST_TIMEOUT", raising=False)
    assert environment.timeout_seconds() == 600.0
    monkeypatch.setenv("TAPEFIT_DIST_TIMEOUT", "45")
    assert environment.timeout_seconds() == 45.0
    assert environment.timeout_seconds(5) == 5.0
    with pytest.raises(ValueError, match="positive"):
        environment.timeout_seconds(0)


def test_one_process_fit_uses_no_strategy_even_inside_a_scope():
    model = tapefit.Sequential([tapefit.Input((2,)), tapefit.layers.Dense(1)])
    dp = distribute.DataParallel()
    assert dp.num_replicas_in_sync == 1 and dp.is_chief and dp.rank == 0
    with dp.scope() as active:
        assert distribute.current_strategy() is active is dp
        model.compile(optimizer="sgd", loss="mse")
    assert distribute.current_strategy() is None
    assert model.__dict__["_strategy"] is dp
    assert distribute.strategy_for(model) is None
    assert dp.wrap_model(model) is model


def test_global_batch_must_divide_among_the_processes(monkeypatch):
    dp = distribute.DataParallel()
    adapter = tapefit.trainers.data_adapters.get_adapter(np.zeros((8, 2)), None, None, 6, False, None, "cpu")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="batch_size=6 is the global batch .* use a multiple of 4"):
        dp.shard_input(adapter, training=True)
    dp.shard_input(adapter, training=False)  # evaluation splits any batch
    assert (adapter.sharder.rank, adapter.sharder.world) == (1, 4)


needs_fully_shard = pytest.mark.skipif(
    not hasattr(torch.distributed.fsdp, "fully_shard"), reason="FSDP needs torch >= 2.6"
)


@needs_fully_shard
def test_fsdp_on_one_process_leaves_the_model_whole(tmp_path):
    model = tapefit.Sequential([tapefit.Input((3,)), tapefit.layers.Dense(2)])
    strategy_ = distribute.FSDP()
    assert strategy_.shard_model(model) is model
    state = distribute.full_state_dict(model)
    assert {k: tuple(v.shape) for k, v in state.items()} == {"_stack.0.kernel": (3, 2), "_stack.0.bias": (2,)}
    strategy_.save_weights(model, tmp_path / "m.weights.safetensors")
    other = tapefit.Sequential([tapefit.Input((3,)), tapefit.layers.Dense(2)])
    strategy_.load_weights(other, tmp_path / "m.weights.safetensors")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_loading_a_full_state_checks_names_and_shapes_first():
    model = tapefit.Sequential([tapefit.Input((3,)), tapefit.layers.Dense(2)])
    before = [w.copy() for w in model.get_weights()]
    bad = {"_stack.0.kernel": torch.zeros(4, 2), "extra": torch.zeros(1)}
    with pytest.raises(ValueError) as info:
        distribute.load_full_state_dict(model, bad)
    message = str(info.value)
    assert "missing: _stack.0.bias" in message and "unexpected: extra" in message
    assert "_stack.0.kernel: model (3, 2) vs file (4, 2)" in message
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("module", [environment, reduction, sharding, strategy, fsdp])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_names():
    for name in distribute.__all__:
        assert getattr(distribute, name) is not None
