"""BackupAndRestore: save and restore the training state, keep backups after any early stop."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch

from tapefit.callbacks import BackupAndRestore, Callback, CallbackList, TerminateOnNaN

INDEX = "backup-index.json"


def _epoch_file(completed_epochs):
    return f"backup-e{completed_epochs:05d}-b0000000.safetensors"


def _index(backup):
    return json.loads((backup / INDEX).read_text())


def _train(model, callbacks, epochs, fail_at=None, nan_at=None):
    """fit()'s loop reduced to what these tests need; epochs start where the backup says."""
    cl = CallbackList(callbacks, model=model, verbose=0, epochs=epochs, steps=2)
    model.stop_training = False
    cl.on_train_begin()
    start = next((cb.initial_epoch for cb in cl.callbacks if isinstance(cb, BackupAndRestore)), 0)
    for epoch in range(start, epochs):
        cl.on_epoch_begin(epoch)
        if epoch == fail_at:
            raise RuntimeError("killed")
        loss = float("nan") if epoch == nan_at else 1.0 / (epoch + 1)
        for step in range(2):
            with torch.no_grad():
                model.dense.weight.add_(1.0)
            model.optimizer.iterations += 1
            model.optimizer.momentum += 0.5
            cl.on_train_batch_end(step, {"loss": torch.tensor(loss)})
            if model.stop_training:
                break
        torch.rand(1), np.random.rand(), random.random()  # the data pipeline draws from every RNG
        cl.on_epoch_end(epoch, {"loss": loss})
        if model.stop_training:
            break
    cl.on_train_end({})
    return start


def _fresh(make_model):
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    return make_model()


def test_resume_after_a_crash_restores_everything(tmp_path, make_model):
    backup = tmp_path / "backup"
    reference = _fresh(make_model)
    _train(reference, [], epochs=3)  # never interrupted
    ref_rng = (torch.rand(3), np.random.rand(3), random.random())

    with pytest.raises(RuntimeError, match="killed"):
        _train(_fresh(make_model), [BackupAndRestore(backup)], epochs=3, fail_at=2)
    assert sorted(os.listdir(backup)) == [_epoch_file(1), _epoch_file(2), INDEX]
    assert _index(backup) == {
        "format": "tapefit.backup-index",
        "latest": _epoch_file(2),
        "previous": _epoch_file(1),
    }

    torch.manual_seed(123), np.random.seed(123), random.seed(123)  # a new process, other seeds
    second = make_model()
    cb = BackupAndRestore(backup)
    assert _train(second, [cb], epochs=3) == 2 and cb.initial_epoch == 2
    torch.testing.assert_close(second.state_dict(), reference.state_dict())
    assert int(second.optimizer.iterations) == 6
    torch.testing.assert_close(second.optimizer.momentum, torch.full((3,), 3.0))
    rng = (torch.rand(3), np.random.rand(3), random.random())
    torch.testing.assert_close(rng[0], ref_rng[0])
    np.testing.assert_array_equal(rng[1], ref_rng[1])
    assert rng[2] == ref_rng[2]
    assert not backup.exists()  # completed: deleted, folder included since it was empty


def test_nan_stop_keeps_the_last_good_backup(tmp_path, model):
    backup = tmp_path / "backup"
    with pytest.warns(UserWarning, match="non-finite loss"):
        _train(model, [TerminateOnNaN(), BackupAndRestore(backup)], epochs=5, nan_at=2)
    assert model.stop_training
    cb = BackupAndRestore(backup)
    cb.set_model(model)
    cb.on_train_begin()
    assert cb.initial_epoch == 2  # the backup of epoch 2's end, not the NaN epoch


def test_early_stop_keeps_the_backup(tmp_path, model):
    class StopAfterTwo(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    backup = tmp_path / "backup"
    _train(model, [StopAfterTwo(), BackupAndRestore(backup)], epochs=5)
    assert _index(backup)["latest"] == _epoch_file(2) and (backup / _epoch_file(2)).exists()


def test_delete_checkpoint_false_and_user_files_are_left_alone(tmp_path, model):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "notes.txt").write_text("mine")
    _train(model, [BackupAndRestore(backup)], epochs=2)
    assert os.listdir(backup) == ["notes.txt"]
    _train(model, [BackupAndRestore(backup, delete_checkpoint=False)], epochs=2)
    assert sorted(os.listdir(backup)) == [_epoch_file(1), _epoch_file(2), INDEX, "notes.txt"]


def test_a_junk_newest_backup_falls_back_to_the_previous_one(tmp_path, make_model):
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError):
        _train(make_model(), [BackupAndRestore(backup)], epochs=4, fail_at=3)
    newest = backup / _epoch_file(3)
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    (backup / ".tapefit-tmp-stale").write_bytes(b"half a file")
    model = make_model()
    cb = BackupAndRestore(backup)
    cb.set_model(model)
    with pytest.warns(UserWarning, match=f"cannot read the backup .*{_epoch_file(3)}"):
        cb.on_train_begin()
    assert cb.initial_epoch == 2
    assert not (backup / ".tapefit-tmp-stale").exists()
    cb._save(3)  # the next backup drops the junk and keeps the good one as the fallback
    assert _index(backup)["previous"] == _epoch_file(2)
    assert sorted(os.listdir(backup)) == [_epoch_file(2), _epoch_file(3), INDEX]


def test_no_readable_backup_is_an_error_not_a_silent_restart(tmp_path, model):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / _epoch_file(2)).write_bytes(b"junk")
    (backup / _epoch_file(1)).write_bytes(b"")
    index = {"format": "tapefit.backup-index", "latest": _epoch_file(2), "previous": _epoch_file(1)}
    (backup / INDEX).write_text(json.dumps(index))
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="Refusing to restart from scratch"):
        _train(model, [BackupAndRestore(backup)], epochs=2)
    (backup / INDEX).write_text("{not json")
    with pytest.raises(RuntimeError, match=f"the backup index .*{INDEX} is unreadable"):
        _train(model, [BackupAndRestore(backup)], epochs=2)


def test_a_backup_is_found_only_once_the_index_names_it(tmp_path, make_model, monkeypatch):
    """A crash between writing a backup and publishing it leaves the one before as the resume point."""
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError):
        _train(make_model(), [BackupAndRestore(backup)], epochs=4, fail_at=2)  # published: epochs 1, 2

    def crash(self, name):
        raise RuntimeError("killed before the index was written")

    monkeypatch.setattr(BackupAndRestore, "_commit", crash)
    with pytest.raises(RuntimeError, match="before the index"):
        _train(make_model(), [BackupAndRestore(backup)], epochs=4)  # writes epoch 3's file, no index
    monkeypatch.undo()
    assert (backup / _epoch_file(3)).exists() and _index(backup)["latest"] == _epoch_file(2)
    cb = BackupAndRestore(backup)
    cb.set_model(make_model())
    cb.on_train_begin()
    assert cb.initial_epoch == 2
    cb._save(3)
    assert sorted(os.listdir(backup)) == [_epoch_file(2), _epoch_file(3), INDEX]


def test_backup_files_without_an_index_are_ignored_with_a_warning(tmp_path, make_model):
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError):
        _train(make_model(), [BackupAndRestore(backup)], epochs=3, fail_at=1)
    (backup / INDEX).unlink()  # as if the first publication never completed
    cb = BackupAndRestore(backup)
    cb.set_model(make_model())
    with pytest.warns(UserWarning, match=f"ignoring {_epoch_file(1)} .*no index"):
        cb.on_train_begin()
    assert cb.initial_epoch == 0


def test_a_different_architecture_is_refused_and_nothing_is_loaded(tmp_path, make_model):
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError):
        _train(make_model(units=2), [BackupAndRestore(backup)], epochs=3, fail_at=1)
    other = make_model(units=4)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    iterations = other.optimizer.iterations.clone()
    with pytest.raises(ValueError, match=r"shape of dense.weight: backup \(2, 3\), model \(4, 3\)"):
        _train(other, [BackupAndRestore(backup)], epochs=3)
    torch.testing.assert_close(other.state_dict(), before)
    assert other.optimizer.iterations == iterations


def test_metadata_records_versions_and_epoch(tmp_path, model):
    import json

    import safetensors

    import tapefit

    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError):
        _train(model, [BackupAndRestore(backup)], epochs=3, fail_at=1)
    with safetensors.safe_open(backup / _epoch_file(1), framework="pt") as f:
        meta = json.loads(f.metadata()["tapefit"])
        keys = set(f.keys())
    assert meta["epoch"] == 1 and meta["tapefit_version"] == tapefit.__version__
    assert meta["torch_version"] == torch.__version__
    assert {"model/dense.weight", "optimizer/iterations", "ranks/0/rng/torch"} <= keys
    assert len(meta["ranks"]) == 1 and "python" in meta["ranks"][0]["rng"]


def test_bad_arguments_are_refused(tmp_path):
    for bad in (0, -3, "batch", True):
        with pytest.raises(ValueError, match="save_freq"):
            BackupAndRestore(tmp_path, save_freq=bad)
    assert BackupAndRestore(tmp_path, save_freq=10).save_freq == 10
    with pytest.raises(ValueError, match="Empty"):
        BackupAndRestore("")


def test_a_step_that_makes_the_weights_non_finite_is_never_backed_up(tmp_path):
    """With save_freq=N the newest backup must not hold the NaN weights of the bad step."""
    import tapefit

    class Poison(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 3:
                with torch.no_grad():
                    self.model.layers[0].kernel.fill_(float("nan"))

    def build():
        tapefit.utils.set_random_seed(0)
        model = tapefit.Sequential([tapefit.Input((3,)), tapefit.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    x, y = np.ones((16, 3), "float32"), np.ones((16, 2), "float32")
    with pytest.warns(UserWarning, match=r"not backing up at epoch 1, batch 4: non-finite values in model/"):
        build().fit(
            x,
            y,
            batch_size=2,
            epochs=1,
            verbose=0,
            callbacks=[Poison(), BackupAndRestore(tmp_path, save_freq=1)],
        )
    assert _index(tmp_path)["latest"] == "backup-e00000-b0000003.safetensors"
    model = build()
    cb = BackupAndRestore(tmp_path, save_freq=1)
    cb.set_model(model)
    cb.on_train_begin()
    assert model._resume_point.step == 3
    assert all(np.isfinite(w).all() for w in model.get_weights())
