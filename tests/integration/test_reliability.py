"""Issue 7's "proven, not hoped": torn writes, determinism, flat memory, shape inference properties."""

import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tapefit
from tapefit import layers

WRITER = textwrap.dedent("""
    import os, sys
    import numpy as np
    import tapefit
    path, cut = sys.argv[1], int(sys.argv[2])
    tapefit.utils.set_random_seed(1)
    model = tapefit.Sequential([tapefit.Input((4,)), tapefit.layers.Dense(64), tapefit.layers.Dense(2)])
    real_write = os.write
    written = [0]
    import tapefit._atomic as atomic
    real_open = os.fdopen
    def dying_fdopen(fd, mode="r", *a, **k):
        f = real_open(fd, mode, *a, **k)
        real = f.write
        def write(data):
            if written[0] + len(data) > cut:
                real(data[: cut - written[0]])
                f.flush()
                os._exit(3)  # the process dies part-way through the write
            written[0] += len(data)
            return real(data)
        f.write = write
        return f
    atomic.os.fdopen = dying_fdopen
    if path.endswith(".tapefit"):
        model.save(path)
    else:
        model.save_weights(path)
""")


@pytest.mark.parametrize("name", ["m.tapefit", "w.weights.safetensors"])
def test_process_dying_mid_write_leaves_the_previous_file_loadable(tmp_path, name):
    path = tmp_path / name
    good = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(64), layers.Dense(2)])
    good.save(path) if name.endswith(".tapefit") else good.save_weights(path)
    before = path.read_bytes()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.run([sys.executable, str(script), str(path), "700"], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert path.read_bytes() == before  # the final path still holds the previous, complete file
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tapefit-tmp-")]
    assert leftovers, "the torn temporary should be there until the next start cleans it"
    from tapefit._atomic import clean_stale_temporaries

    assert clean_stale_temporaries(tmp_path) == leftovers
    if name.endswith(".tapefit"):
        loaded = tapefit.models.load_model(path)
    else:
        loaded = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(64), layers.Dense(2)])
        loaded.load_weights(path)
    for a, b in zip(good.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def _train_once(seed):
    tapefit.utils.set_random_seed(seed)
    x = np.random.rand(64, 5).astype("float32")
    y = np.random.randint(0, 3, 64)
    model = tapefit.Sequential(
        [tapefit.Input((5,)), layers.Dense(16, activation="relu"), layers.Dropout(0.5), layers.Dense(3)]
    )
    model.compile(optimizer="adam", loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model.get_weights()


def test_same_seed_gives_the_same_weights_twice():
    a, b, c = _train_once(3), _train_once(3), _train_once(4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


def _rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _live_tensors():
    """(all live tensors, those holding an autograd graph) after a full collection."""
    gc.collect()
    tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    return len(tensors), sum(t.grad_fn is not None for t in tensors)


class _MemoryProbe(tapefit.callbacks.Callback):
    """Counts live tensors at the end of the given epochs and keeps every logs dict it is handed.

    Only epoch hooks are overridden, so the fit keeps its no-batch-hooks fast path.
    """

    def __init__(self, at_epochs):
        super().__init__()
        self.at_epochs = at_epochs
        self.counts = {}
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(logs)
        if epoch + 1 in self.at_epochs:
            self.counts[epoch + 1] = (*_live_tensors(), _rss_kb())

    def on_train_end(self, logs=None):
        self.logs.append(logs)


def _memory_profile(model, x, y, epochs):
    """Fit ``epochs`` epochs after a warm-up. Returns (tensors, graph-holding tensors, RSS kB) before
    the fit, at its half and at its end, then what a user keeps: History and every logs dict."""
    model.compile(
        optimizer="sgd",
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)  # warm up allocators and lazily built state
    start = (*_live_tensors(), _rss_kb())
    probe = _MemoryProbe({epochs // 2, epochs})
    hist = model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=[probe])
    return start, probe.counts[epochs // 2], probe.counts[epochs], hist, probe.logs


def _assert_logs_are_python_floats(hist, logs, epochs):
    assert len(hist.history["loss"]) == epochs
    values = [v for series in hist.history.values() for v in series]
    values += [v for entry in logs for v in entry.values()]
    assert values and all(type(v) is float for v in values), {type(v) for v in values}


def _mlp():
    return tapefit.Sequential([tapefit.Input((8,)), layers.Dense(8, activation="relu"), layers.Dense(2)])


@pytest.mark.slow
def test_long_run_has_a_flat_memory_profile():
    """20,000 steps: no autograd graph kept alive by logs, History or metrics, no growth per epoch.

    One leaked tensor per epoch would add 20 between epochs 20 and 40 (the next test shows that
    these checks catch it); History and the logs hold Python floats, never tensors.
    """
    x = torch.rand(2000, 8)
    y = torch.randint(0, 2, (2000,))
    start, half, end, hist, logs = _memory_profile(_mlp(), x, y, epochs=40)
    _assert_logs_are_python_floats(hist, logs, 40)
    assert end[0] - half[0] <= 2, f"live tensors after 20 epochs {half[0]}, after 40 {end[0]}"
    assert start[1] == half[1] == end[1], f"tensors holding a graph: {start[1]}, {half[1]}, {end[1]}"
    assert end[2] - start[2] < 30_000, f"RSS grew by {end[2] - start[2]} kB over 20,000 steps"


class _LeakyModel(tapefit.Sequential):
    """Keeps the loss (and with it the step's autograd graph) of the first step of every epoch."""

    def compute_loss(self, *args, **kwargs):
        loss = super().compute_loss(*args, **kwargs)
        if torch.is_grad_enabled():
            step = self.__dict__.get("_train_steps", 0)
            self.__dict__["_train_steps"] = step + 1
            if step % 10 == 0:  # 10 steps per epoch below
                self.__dict__.setdefault("_leaked", []).append(loss)
        return loss


def test_the_memory_check_catches_one_leaked_graph_per_epoch():
    x = torch.rand(40, 8)
    y = torch.randint(0, 2, (40,))
    model = _LeakyModel([tapefit.Input((8,)), layers.Dense(8, activation="relu"), layers.Dense(2)])
    start, half, end, hist, logs = _memory_profile(model, x, y, epochs=20)
    _assert_logs_are_python_floats(hist, logs, 20)
    assert end[0] - half[0] >= 10  # one per epoch from epoch 10 to 20; the flat-profile test allows 2
    assert end[1] - half[1] >= 10 and half[1] > start[1]


SHAPE_LAYERS = [
    lambda: layers.Conv2D(3, 3, padding="same"),
    lambda: layers.Conv2D(2, 2, strides=2),
    lambda: layers.MaxPooling2D(2),
    lambda: layers.AveragePooling2D(2, padding="same"),
    lambda: layers.DepthwiseConv2D(3, padding="same"),
    lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same"),
    lambda: layers.UpSampling2D(2),
    lambda: layers.ZeroPadding2D(1),
    lambda: layers.GlobalAveragePooling2D(),
    lambda: layers.Flatten(),
    lambda: layers.BatchNormalization(),
    lambda: layers.Dense(5),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(4, 12),
    w=st.integers(4, 12),
    c=st.integers(1, 4),
    batch=st.integers(1, 3),
    which=st.lists(st.integers(0, len(SHAPE_LAYERS) - 1), min_size=1, max_size=3),
)
def test_symbolic_shapes_equal_real_output_shapes(h, w, c, batch, which):
    inp = tapefit.Input((h, w, c))
    x = inp
    stack = []
    for i in which:
        if x.ndim != 4 and i != len(SHAPE_LAYERS) - 1:
            continue
        if i in (1, 2) and min(x.shape[1], x.shape[2]) < 2:  # a 2x2 window needs 2 rows and columns
            continue
        layer = SHAPE_LAYERS[i]()
        x = layer(x)
        stack.append(layer)
    model = tapefit.Model(inp, x)
    real = model(torch.randn(batch, h, w, c))
    assert (batch, *x.shape[1:]) == tuple(real.shape)
    assert model.compute_output_shape((None, h, w, c)) == x.shape


def test_resuming_with_other_compile_arguments_is_a_strict_error(tmp_path):
    x = np.random.default_rng(0).random((32, 4)).astype("float32")
    y = np.random.default_rng(1).integers(0, 2, 32)

    def run(optimizer, epochs, metrics=None):
        tapefit.utils.set_random_seed(0)
        model = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(8), layers.Dense(2)])
        model.compile(
            optimizer=optimizer,
            loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=metrics,
        )
        run.model = model

        class Interrupt(tapefit.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:  # after the first epoch's backup
                    raise KeyboardInterrupt

        cbs = [tapefit.callbacks.BackupAndRestore(tmp_path)] + ([Interrupt()] if epochs == 3 else [])
        model.fit(x, y, epochs=epochs, verbose=0, callbacks=cbs)
        return model

    with pytest.raises(KeyboardInterrupt):
        run("adam", 3)
    tapefit.utils.set_random_seed(0)
    fresh = [
        w.copy()
        for w in tapefit.Sequential([tapefit.Input((4,)), layers.Dense(8), layers.Dense(2)]).get_weights()
    ]
    cases = [
        (("sgd",), r"optimizer\.class: backup 'Adam', now 'SGD'"),
        (
            (tapefit.optimizers.Adam(0.5),),
            r"optimizer\.config\.learning_rate: backup 0\.00100000\d*, now 0\.5",
        ),
        (("adam", 2, ["accuracy"]), r"metrics: backup None, now \['accuracy'\]"),
    ]
    for args, message in cases:
        with pytest.raises(
            ValueError, match=r"other compile\(\) arguments; nothing was loaded(.|\n)*" + message
        ):
            run(args[0], 2, *args[2:])
        for a, b in zip(fresh, run.model.get_weights()):  # nothing was loaded
            np.testing.assert_array_equal(a, b)
    assert (tmp_path / "backup-index.json").exists()  # the backup is kept for the right command
    assert int(run("adam", 2).optimizer.iterations) == 2  # the same arguments resume: epoch 2 of 2


def test_cleaning_removes_only_the_temporaries_of_dead_writers(tmp_path):
    """A folder may be shared (the working directory, several jobs): live writers' files stay."""
    from tapefit import _atomic

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    host = _atomic._host_tag()
    names = {
        "dead": f".tapefit-tmp-{host}-{dead_pid}-abc-m.tapefit",
        "mine": f".tapefit-tmp-{host}-{os.getpid()}-abc",
        "other_host": f".tapefit-tmp-{'0' * 8 if host != '0' * 8 else '1' * 8}-{dead_pid}-abc",
        "legacy": ".tapefit-tmp-abc123",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / "keep.weights.safetensors").write_bytes(b"user file")
    assert sorted(_atomic.clean_stale_temporaries(tmp_path)) == sorted([names["dead"], names["legacy"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["mine"], names["other_host"], "keep.weights.safetensors"]
    )


def test_model_checkpoint_cleans_what_a_killed_save_left(tmp_path):
    from tapefit import _atomic

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    torn = tmp_path / f".tapefit-tmp-{_atomic._host_tag()}-{int(dead.stdout)}-abc-best.weights.safetensors"
    torn.write_bytes(b"half")
    model = tapefit.Sequential([tapefit.Input((2,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    checkpoint = tapefit.callbacks.ModelCheckpoint(
        str(tmp_path / "best.weights.safetensors"), monitor="loss", save_weights_only=True
    )
    model.fit(
        np.ones((4, 2), "float32"), np.ones((4, 1), "float32"), epochs=1, verbose=0, callbacks=[checkpoint]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.weights.safetensors"]
