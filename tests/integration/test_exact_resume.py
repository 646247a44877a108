"""Kill a training process with SIGKILL at random moments, restart the same command until it
finishes, and get bit for bit the weights of a run that was never interrupted (issue 7)."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import tapefit
    from tapefit import layers

    backup, out, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    tapefit.config.set_device("cpu")
    tapefit.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((160, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                                layers.Dense(2)])
    model.compile(optimizer=tapefit.optimizers.Adam(0.01),
                  loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    slow = tapefit.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: time.sleep(0.03))
    stop = tapefit.callbacks.EarlyStopping(monitor="loss", patience=50)
    ds = tapefit.data.Dataset.from_tensor_slices((x, y)).shuffle(160).batch(16)
    data = (x, y) if kind == "arrays" else (ds,)
    kwargs = {"batch_size": 16} if kind == "arrays" else {}
    hist = model.fit(*data, epochs=3, verbose=0, callbacks=[slow, stop,
                     tapefit.callbacks.BackupAndRestore(backup, save_freq=1)], **kwargs)
    model.save_weights(out)
    print("HISTORY", hist.history["loss"])
""")


def _run(script, backup, out, kind, kill_after=None):
    proc = subprocess.Popen(
        [sys.executable, str(script), str(backup), str(out), kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONHASHSEED="0"),
    )
    if kill_after is None:
        stdout, _ = proc.communicate(timeout=180)
        return proc.returncode, stdout
    try:
        stdout, _ = proc.communicate(timeout=kill_after)
        return proc.returncode, stdout
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return None, ""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["arrays", "dataset"])
def test_sigkill_at_random_moments_then_restart_gives_identical_weights(tmp_path, kind):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    code, ref_out = _run(script, tmp_path / "ref_backup", tmp_path / "ref.weights.safetensors", kind)
    assert code == 0, ref_out
    start = time.perf_counter()
    code, _ = _run(script, tmp_path / "probe_backup", tmp_path / "probe.weights.safetensors", kind)
    full = time.perf_counter() - start  # start-up plus training: the kills land inside this window

    rnd = random.Random(7)
    kills = 0
    code, out = None, ""
    for _ in range(12):
        delay = rnd.uniform(0.5 * full, 0.95 * full) if kills < 4 else None
        code, out = _run(script, tmp_path / "backup", tmp_path / "resumed.weights.safetensors", kind, delay)
        if code is None:
            kills += 1
            continue
        break
    assert code == 0, out
    assert kills >= 2, "the kills all came too late to interrupt training"
    ref = load_file(tmp_path / "ref.weights.safetensors")
    resumed = load_file(tmp_path / "resumed.weights.safetensors")
    assert ref.keys() == resumed.keys()
    for k in ref:
        assert torch.equal(ref[k], resumed[k]), k
    assert ref_out.split("HISTORY")[1] == out.split("HISTORY")[1]  # the History is identical too
    assert not (tmp_path / "backup").exists() or not any((tmp_path / "backup").iterdir())


def _pipelines(x, y):
    """Inputs whose random draws must all be replayed: shuffles, random maps per element and per batch."""
    import tapefit

    def noisy_elements(a, b):
        return a + torch.randn(4), b

    def numpy_noise(a, b):
        return a + torch.from_numpy(np.random.standard_normal(4).astype("float32")), b

    def noisy_batches(a, b):
        return a + torch.randn_like(a), b

    slices = tapefit.data.Dataset.from_tensor_slices
    return {
        "arrays": lambda: ((x, y), {"batch_size": 8}),
        "torch_map_per_element": lambda: ((slices((x, y)).shuffle(64).map(noisy_elements).batch(8),), {}),
        "numpy_map_per_element": lambda: ((slices((x, y)).shuffle(64).map(numpy_noise).batch(8),), {}),
        "map_per_batch": lambda: ((slices((x, y)).shuffle(64).batch(8).map(noisy_batches),), {}),
    }


@pytest.mark.parametrize(
    "kind", ["arrays", "torch_map_per_element", "numpy_map_per_element", "map_per_batch"]
)
def test_mid_epoch_backup_resumes_at_the_step_in_process(tmp_path, kind):
    """The same property without processes: stop after 5 batches, then resume in a new model.

    The random maps matter: a random function drawing from the global generator while the
    pipeline probes it must not shift the resumed epoch's shuffle order.
    """
    import tapefit
    from tapefit import layers

    def build():
        tapefit.utils.set_random_seed(1)
        model = tapefit.Sequential(
            [tapefit.Input((4,)), layers.Dense(8, activation="relu"), layers.Dropout(0.5), layers.Dense(2)]
        )
        model.compile(optimizer="adam", loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = rng.integers(0, 2, 64)
    data = _pipelines(x, y)[kind]
    reference = build()
    args, kwargs = data()
    reference.fit(*args, epochs=2, verbose=0, **kwargs)

    class Crash(tapefit.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model._fit_state.epoch == 1 and batch == 4:
                raise KeyboardInterrupt

    first = build()
    args, kwargs = data()
    with pytest.raises(KeyboardInterrupt):
        first.fit(
            *args,
            epochs=2,
            verbose=0,
            callbacks=[tapefit.callbacks.BackupAndRestore(tmp_path, save_freq=1), Crash()],
            **kwargs,
        )
    second = build()
    args, kwargs = data()
    second.fit(
        *args,
        epochs=2,
        verbose=0,
        callbacks=[tapefit.callbacks.BackupAndRestore(tmp_path, save_freq=1)],
        **kwargs,
    )
    for a, b in zip(reference.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_resume_keeps_early_stopping_best_weights(tmp_path):
    """The best weights EarlyStopping kept before the interruption are restored at its stop."""
    import tapefit
    from tapefit import layers

    rng = np.random.default_rng(2)
    x = rng.standard_normal((48, 4)).astype("float32")
    y = rng.integers(0, 2, 48)

    def run(callbacks):
        tapefit.utils.set_random_seed(2)
        model = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(2)])
        model.compile(optimizer="adam", loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
        # mode="max" on a falling loss: epoch 0 is the best, and training stops at epoch 2 restoring it
        stop = tapefit.callbacks.EarlyStopping(
            monitor="loss", mode="max", patience=2, restore_best_weights=True
        )
        model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0, callbacks=[*callbacks, stop])
        return model

    reference = run([])

    class Interrupt(tapefit.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run([tapefit.callbacks.BackupAndRestore(tmp_path), Interrupt()])
    resumed = run([tapefit.callbacks.BackupAndRestore(tmp_path)])
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_resume_restores_the_other_callbacks_states(tmp_path):
    """EarlyStopping's wait, ReduceLROnPlateau's counters and ModelCheckpoint's best carry over,
    so the resumed run reduces the learning rate, saves and stops at the same epochs."""
    import tapefit
    from tapefit import layers

    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 4)).astype("float32")
    y = rng.integers(0, 2, 32)

    def run(extra, folder):
        tapefit.utils.set_random_seed(3)
        model = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(2)])
        model.compile(
            optimizer=tapefit.optimizers.SGD(0.05),
            loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        # mode="max" on a falling loss: no epoch after the first counts as an improvement
        stop = tapefit.callbacks.EarlyStopping(monitor="loss", mode="max", patience=4)
        plateau = tapefit.callbacks.ReduceLROnPlateau(
            monitor="loss", mode="max", patience=1, factor=0.5, cooldown=1
        )
        best = tapefit.callbacks.ModelCheckpoint(
            str(folder / "best-{epoch}.weights.safetensors"),
            monitor="loss",
            save_best_only=True,
            save_weights_only=True,
        )
        history = model.fit(
            x, y, batch_size=8, epochs=10, shuffle=False, verbose=0, callbacks=[*extra, stop, plateau, best]
        )
        return model, history, stop, plateau, best

    (tmp_path / "ref").mkdir()
    (tmp_path / "resumed").mkdir()
    ref, ref_history, ref_stop, ref_plateau, ref_best = run([], tmp_path / "ref")

    class Interrupt(tapefit.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise KeyboardInterrupt

    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        run([tapefit.callbacks.BackupAndRestore(backup), Interrupt()], tmp_path / "resumed")
    model, history, stop, plateau, best = run(
        [tapefit.callbacks.BackupAndRestore(backup)], tmp_path / "resumed"
    )
    assert history.history == ref_history.history  # learning rates included
    assert stop.stopped_epoch == ref_stop.stopped_epoch > 0
    assert (stop.wait, plateau.wait, plateau.cooldown_counter) == (
        ref_stop.wait,
        ref_plateau.wait,
        ref_plateau.cooldown_counter,
    )
    assert best.best == ref_best.best
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == sorted(
        p.name for p in (tmp_path / "ref").iterdir()
    )
    for a, b in zip(ref.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_run_killed_after_its_last_backup_returns_the_full_history(tmp_path):
    """Killed between the last epoch's backup and the end of fit: the restart has no epoch left to
    run and must still return the History of the run it completes."""
    import tapefit
    from tapefit import layers

    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((16, 3)).astype("float32"), rng.integers(0, 2, 16)

    def run():
        tapefit.utils.set_random_seed(4)
        model = tapefit.Sequential([tapefit.Input((3,)), layers.Dense(2)])
        model.compile(optimizer="sgd", loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
        backup = tapefit.callbacks.BackupAndRestore(tmp_path, delete_checkpoint=False)
        return model, model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[backup])

    first_model, first = run()
    again_model, again = run()  # everything was done: nothing trains, the History comes back
    assert again.history == first.history and len(again.history["loss"]) == 2
    for a, b in zip(first_model.get_weights(), again_model.get_weights()):
        np.testing.assert_array_equal(a, b)
