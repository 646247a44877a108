"""fit / evaluate / predict / a GradientTape loop on 2 gloo processes under torchrun, against the
same code on one process (tests/distribute/_train_script.py runs both)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

import tapefit

from . import _train_script
from ._launch import torchrun


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(rank 0 results, rank 1 results, single-process results, output folder)."""
    out = tmp_path_factory.mktemp("dp")
    done = torchrun("_train_script.py", str(out), TAPEFIT_DIST_TIMEOUT="60")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    cwd = os.getcwd()
    try:
        _train_script.run(str(out / "single"))
    finally:
        os.chdir(cwd)
    load = lambda name: dict(np.load(out / name / "results.npz"))  # noqa: E731
    return load("rank0"), load("rank1"), load("single"), out


EPOCHS_STEPS = _train_script.EPOCHS * (_train_script.N_TRAIN // _train_script.GLOBAL_BATCH)


def _weights(results, prefix):
    return [results[k] for k in sorted(results) if k.startswith(prefix)]


def _assert_weights_close(a, b, prefix):
    wa, wb = _weights(a, prefix), _weights(b, prefix)
    assert len(wa) == len(wb) > 0
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)


def test_ranks_end_identical(runs):
    rank0, rank1, _, _ = runs
    assert sorted(rank0) == sorted(rank1)
    for k in rank0:
        # custom_w: see test_custom_train_step_is_synchronised_by_the_optimizer; dropout_: per rank
        if not k.startswith(("custom_w", "dropout_")):
            np.testing.assert_array_equal(rank0[k], rank1[k], err_msg=k)


def test_fit_weights_equal_one_process_with_the_same_global_batch(runs):
    rank0, _, single, _ = runs
    _assert_weights_close(rank0, single, "fit_w")


def test_accumulation_matches_one_process(runs):
    rank0, rank1, single, _ = runs
    _assert_weights_close(rank0, single, "accum_w")
    steps = 2 * (_train_script.N_TRAIN // (_train_script.GLOBAL_BATCH // 2))
    # Averaged on every batch (by DDP during backward), so every rank holds the same accumulators.
    assert rank0["accum_all_reduces"].tolist() == rank1["accum_all_reduces"].tolist() == [steps, 0]
    assert single["accum_all_reduces"].tolist() == [0, 0]


def test_shuffled_fit_draws_the_one_process_order(runs):
    rank0, _, single, _ = runs
    _assert_weights_close(rank0, single, "shuffled_w")


def test_dropout_masks_differ_between_ranks_while_the_data_order_agrees(runs):
    rank0, rank1, single, _ = runs
    steps = len(rank0["dropout_masks"])
    assert steps == 2 * (_train_script.N_TRAIN // _train_script.GLOBAL_BATCH)
    assert all(not np.array_equal(a, b) for a, b in zip(rank0["dropout_masks"], rank1["dropout_masks"]))
    per_epoch = steps // 2
    for epoch in range(2):  # the two ranks' pieces of the unseeded shuffle cover every row once
        span = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
        seen = np.concatenate([rank0["dropout_rows"][span].ravel(), rank1["dropout_rows"][span].ravel()])
        np.testing.assert_array_equal(np.sort(seen), np.sort(_train_script.data()["x_train"][:, 0]))
    # the first epoch's order is the one a single process draws (no dropout drawn before it)
    first = np.concatenate([rank0["dropout_rows"][:per_epoch], rank1["dropout_rows"][:per_epoch]], axis=1)
    np.testing.assert_array_equal(first, single["dropout_rows"][:per_epoch])


def test_history_holds_global_values(runs):
    rank0, _, single, _ = runs
    got, want = json.loads(str(rank0["history"])), json.loads(str(single["history"]))
    assert sorted(got) == ["accuracy", "loss", "val_accuracy", "val_loss"] == sorted(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)


def test_evaluate_counts_every_row_once(runs):
    # 13 rows in batches of 4 over 2 ranks: pieces of 2, 2, 2 and a last batch of 1 row that
    # only rank 0 sees; padding or duplicating it would move the accuracy off k / 13.
    rank0, _, single, _ = runs
    got, want = json.loads(str(rank0["evaluate"])), json.loads(str(single["evaluate"]))
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-7)
    assert round(got["accuracy"] * _train_script.N_EVAL, 4) % 1 == 0


def test_predict_returns_every_row_in_order(runs):
    rank0, rank1, single, _ = runs
    assert rank0["predict"].shape == (_train_script.N_EVAL, 3)
    np.testing.assert_allclose(rank0["predict"], single["predict"], atol=1e-5)
    np.testing.assert_array_equal(rank0["predict"], rank1["predict"])


def test_fewer_rows_than_processes_are_handled_by_every_rank(runs):
    rank0, rank1, single, _ = runs
    for key in ("one_row_evaluate", "batch_of_one_evaluate"):
        got, other, want = (json.loads(str(r[key])) for r in (rank0, rank1, single))
        assert got == other
        assert got.keys() == want.keys()
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-5), (key, name)
    for key in ("one_row_predict", "dataset_of_ones_predict"):
        assert rank0[key].shape == single[key].shape == (len(single[key]), 3)
        np.testing.assert_allclose(rank0[key], single[key], atol=1e-5)
        np.testing.assert_array_equal(rank0[key], rank1[key])


def test_stop_training_on_rank_zero_stops_every_rank(runs):
    rank0, rank1, _, _ = runs
    assert int(rank0["stopped_epochs"]) == int(rank1["stopped_epochs"]) == 2


def test_only_rank_zero_writes_files(runs):
    _, _, _, out = runs
    written = sorted(os.listdir(out / "rank0"))
    assert written == [
        "backup",
        "ckpt-1.weights.safetensors",
        "ckpt-2.weights.safetensors",
        "ckpt-3.weights.safetensors",
        "log.csv",
        "results.npz",
    ]
    assert sorted(os.listdir(out / "rank0" / "backup")) == [
        "backup-e00002-b0000000.safetensors",
        "backup-e00003-b0000000.safetensors",
        "backup-index.json",
    ]
    assert os.listdir(out / "rank1") == ["results.npz"]
    with open(out / "rank0" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]


def test_gradient_tape_loop_with_tapefit_distribute(runs):
    rank0, _, single, _ = runs
    _assert_weights_close(rank0, single, "tape_w")
    np.testing.assert_allclose(rank0["tape_loss"], single["tape_loss"], rtol=1e-5)


def test_backward_loop_with_the_ddp_wrapped_model(runs):
    rank0, _, single, _ = runs
    _assert_weights_close(rank0, single, "ddp_w")


def test_custom_train_step_is_synchronised_by_the_optimizer(runs):
    rank0, rank1, single, _ = runs
    _assert_weights_close(rank0, rank1, "custom_w")
    _assert_weights_close(rank0, single, "custom_w")


@pytest.mark.skipif(not _train_script.HAS_FULLY_SHARD, reason="FSDP needs torch >= 2.6")
def test_fsdp_trains_like_one_process_and_its_checkpoint_loads_on_another_world_size(runs):
    rank0, rank1, single, out = runs
    np.testing.assert_allclose(rank0["fsdp_predict"], single["fsdp_predict"], atol=1e-5)
    np.testing.assert_array_equal(rank0["fsdp_predict"], rank1["fsdp_predict"])
    np.testing.assert_array_equal(rank0["fsdp_reloaded_predict"], rank0["fsdp_predict"])
    np.testing.assert_allclose(rank0["fsdp_one_row_predict"], single["fsdp_one_row_predict"], atol=1e-5)
    np.testing.assert_array_equal(rank0["fsdp_one_row_predict"], rank1["fsdp_one_row_predict"])
    model = _train_script.make_model(seed=123)  # one process: a different world size
    model.load_weights(out / "fsdp-2.weights.safetensors")
    x = _train_script.data()["x_eval"][:12]
    np.testing.assert_allclose(model.predict(x, verbose=0), rank0["fsdp_predict"], atol=1e-6)
    # ModelCheckpoint gathered the sharded model (weights and optimizer state) into one whole file
    restored = tapefit.saving.load_model(out / "fsdp-ckpt-2.tapefit")
    np.testing.assert_allclose(restored.predict(x, verbose=0), rank0["fsdp_predict"], atol=1e-6)
    assert int(restored.optimizer.iterations) == EPOCHS_STEPS
