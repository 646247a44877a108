"""Issue 6's mixed-precision check: seed 003's CIFAR-10 CNN trained with ``fit`` under each dtype
policy, on the same data from the same initial weights and shuffling seed, reporting the final
accuracy on a held-out split, training samples/s, and the speed-up over float32.

Policies: ``float32``, ``mixed_bfloat16`` and ``mixed_float16`` (for which ``compile()`` wraps the
optimizer in a ``LossScaleOptimizer``, as Keras does). float16 needs CUDA: on CPU its row says so
unless ``--policies`` names it. The data are real CIFAR-10 when ``tapefit.datasets.cifar10``
finds it in the cache (never downloaded here), else a synthetic task that can be learned (a
class-dependent pattern, randomly shifted, under heavy noise), so that accuracy says whether a
policy trains as well as float32. Samples/s is that of the median epoch among epochs 2..E of one
``fit`` call (the first includes ``torch.compile`` under ``jit_compile="auto"`` on CUDA), CUDA
synchronised at epoch ends.

    python -m bench.mixed_precision            # prints a markdown table (CPU: tiny sizes)
    python -m bench.mixed_precision --write    # also puts it in BENCHMARKS.md's mixed-precision section
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

import tapefit

from .timing import sync
from .workloads import MODELS, build_tapefit, make_loss, make_optimizer

__all__ = ["POLICIES", "learnable_cifar", "load", "train", "run", "markdown", "main"]

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
SECTION = "mixed-precision"
# The cached forms tapefit.datasets.cifar10 reads (its module docstring), under $TAPEFIT_HOME/datasets.
_CIFAR_FILES = (
    "cifar-10-batches-py",
    "cifar-10-python.tar.gz",
    "cifar-10-batches-py.tar.gz",
    "cifar-10-batches-bin",
    "cifar-10-binary.tar.gz",
)
_SYNTHETIC = (
    "synthetic, learnable: each class is a fixed smooth random pattern (amplitude 0.12), shifted by "
    "up to 3 pixels, under Gaussian noise (sigma 0.25), clipped to [0, 1]; 20% of the labels (train "
    "and test) are replaced at random, so the best possible accuracy is about 0.82. Its accuracy says "
    "whether a policy learns as well as float32, not what CIFAR-10 accuracy would be"
)


def _defaults(device: torch.device) -> dict[str, int]:
    if device.type == "cuda":
        return {"n_train": 50_000, "n_test": 10_000, "epochs": 8}
    return {"n_train": 1_000, "n_test": 500, "epochs": 2}  # bf16 convolutions are slow on most CPUs


def learnable_cifar(
    n_train: int, n_test: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: float32 (n, 32, 32, 3) in [0, 1], int64 (n, 1) labels.

    A class is a smooth random pattern (a few low-frequency sinusoids per channel); a sample is
    its class's pattern shifted by up to 3 pixels each way, plus noise. Convolutions and pooling
    learn it; one pixel alone says little. A fifth of the labels are random (accuracy tops out
    near 0.82), so that a long run does not end at 100% for every policy.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:38, 0:38].astype(np.float32) / 38
    patterns = np.zeros((10, 38, 38, 3), np.float32)
    for c in range(10):
        for ch in range(3):
            for _ in range(3):
                fy, fx = rng.uniform(-4, 4, 2)
                patterns[c, :, :, ch] += np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
    patterns *= 0.12 / patterns.std(axis=(1, 2, 3), keepdims=True)
    n = n_train + n_test
    y = rng.integers(0, 10, n)
    dy, dx = rng.integers(0, 7, n), rng.integers(0, 7, n)
    x = rng.normal(0.5, 0.25, (n, 32, 32, 3)).astype(np.float32)
    for oy in range(7):
        for ox in range(7):
            rows = np.flatnonzero((dy == oy) & (dx == ox))
            x[rows] += patterns[y[rows], oy : oy + 32, ox : ox + 32]
    np.clip(x, 0.0, 1.0, out=x)
    y = np.where(rng.random(n) < 0.2, rng.integers(0, 10, n), y).reshape(n, 1).astype(np.int64)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _cifar_cached() -> bool:
    folder = os.path.join(tapefit.config.tapefit_home(), "datasets")
    return any(os.path.exists(os.path.join(folder, name)) for name in _CIFAR_FILES)


def load(data: str, n_train: int, n_test: int) -> tuple[tuple[np.ndarray, ...], str]:
    """The four arrays and a description; ``data`` is ``"auto"`` (real when cached), ``"real"`` or
    ``"synthetic"``."""
    if data not in ("auto", "real", "synthetic"):
        raise ValueError(f"bench.mixed_precision: data must be 'auto', 'real' or 'synthetic', got {data!r}")
    if data == "real" or (data == "auto" and _cifar_cached()):
        (x_train, y_train), (x_test, y_test) = tapefit.datasets.cifar10.load_data()
        arrays = (
            x_train[:n_train].astype(np.float32) / 255.0,
            y_train[:n_train].astype(np.int64),
            x_test[:n_test].astype(np.float32) / 255.0,
            y_test[:n_test].astype(np.int64),
        )
        return arrays, "real CIFAR-10 (from the tapefit dataset cache), scaled to [0, 1] as seed 003 does"
    return learnable_cifar(n_train, n_test), _SYNTHETIC


class _EpochClock(tapefit.callbacks.Callback):
    """Wall-clock time at the end of each epoch, the device synchronised first (once per epoch)."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device
        self.ends: list[float] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        sync(self.device)
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        sync(self.device)
        self.ends.append(time.perf_counter())


def _fit(policy: str, arrays: tuple[torch.Tensor, ...], epochs: int, batch: int, jit: Any) -> dict[str, Any]:
    x_train, y_train, x_test, y_test = arrays
    previous = tapefit.mixed_precision.global_policy()
    tapefit.mixed_precision.set_global_policy(policy)
    try:
        model = build_tapefit("cnn", compiled=False, seed=0)
    finally:
        tapefit.mixed_precision.set_global_policy(previous)
    model.compile(
        optimizer=make_optimizer("cnn"), loss=make_loss("cnn"), metrics=["accuracy"], jit_compile=jit
    )
    clock = _EpochClock(x_train.device)
    tapefit.utils.set_random_seed(0)  # the same shuffling for every policy
    history = model.fit(
        x_train, y_train, batch_size=batch, epochs=epochs, verbose=0, shuffle=True, callbacks=[clock]
    ).history
    result = model.evaluate(x_test, y_test, batch_size=1000, verbose=0, return_dict=True)
    # The median epoch after the first: a recompile (a loss-scale change under torch.compile, say)
    # costs one epoch, not the figure.
    durations = [b - a for a, b in zip(clock.ends, clock.ends[1:])]
    steady = len(x_train) / statistics.median(durations) if durations else None
    optimizer = model.optimizer
    return {
        "policy": policy,
        "optimizer": type(optimizer).__name__
        + (f"({type(optimizer.inner_optimizer).__name__})" if hasattr(optimizer, "inner_optimizer") else ""),
        "loss_scale": float(optimizer.dynamic_scale) if hasattr(optimizer, "inner_optimizer") else None,
        "accuracy": float(result["accuracy"]),
        "train_loss": float(history["loss"][-1]),
        "samples_per_s": steady,
        "first_epoch_s": clock.ends[0] - clock.start,
        "weights": sorted({str(w.dtype).removeprefix("torch.") for w in model.weights}),
        "note": "",
    }


def train(
    policy: str, arrays: tuple[np.ndarray, ...], epochs: int, batch: int, jit: Any = "auto"
) -> dict[str, Any]:
    """Train seed 003's CNN under ``policy`` on ``arrays`` (moved to the device once); one result row.

    If ``torch.compile`` fails, the row is retrained eagerly and its note says so; any other
    failure gives a row holding the error, so one policy cannot cost the others.
    """
    device = tapefit.config.get_device()
    tensors = tuple(torch.from_numpy(a).to(device) for a in arrays)
    compiles = jit is True or (jit == "auto" and device.type == "cuda")
    try:
        return _fit(policy, tensors, epochs, batch, jit)
    except Exception as e:
        error = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")[:300]
        if not compiles:
            return {"policy": policy, "note": f"failed: {error}"}
    try:
        row = _fit(policy, tensors, epochs, batch, False)
    except Exception as e:
        return {"policy": policy, "note": f"failed: {type(e).__name__}: {e}"[:300]}
    row["note"] = f"torch.compile failed ({error}); trained eagerly"
    return row


def run(
    policies: list[str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    epochs: int | None = None,
    batch: int | None = None,
    data: str = "auto",
    jit: Any = "auto",
    log: Any = print,
) -> dict[str, Any]:
    """Train under every policy; ``{"meta": ..., "rows": [...]}``. Defaults depend on the device
    (CUDA: 50,000/10,000 images, 8 epochs, all three policies; else 1,000/500, 2 epochs, no float16).

    Example:
        >>> report = run(n_train=400, n_test=100, epochs=2, data="synthetic")  # doctest: +SKIP
    """
    device = tapefit.config.get_device()
    sizes = _defaults(device)
    n_train, n_test, epochs = (
        n_train or sizes["n_train"],
        n_test or sizes["n_test"],
        epochs or sizes["epochs"],
    )
    batch = batch or MODELS["cnn"].batch
    explicit = policies is not None
    policies = list(policies or POLICIES)
    for p in policies:
        if p not in POLICIES:
            raise ValueError(
                f"bench.mixed_precision: unknown policy {p!r}; choose from {', '.join(POLICIES)}"
            )
    arrays, description = load(data, n_train, n_test)
    started = time.perf_counter()
    rows = []
    for policy in policies:
        if policy == "mixed_float16" and device.type != "cuda" and not explicit:
            rows.append({"policy": policy, "note": "skipped: float16 needs CUDA (--policies to force it)"})
            continue
        log(f"== {policy}: {epochs} epochs of {n_train} images, batch {batch}")
        rows.append(train(policy, arrays, epochs, batch, jit))
    base = next((r for r in rows if r["policy"] == "float32" and r.get("samples_per_s")), None)
    for row in rows:
        if base is not None and row.get("samples_per_s"):
            row["speedup"] = row["samples_per_s"] / base["samples_per_s"]
            row["accuracy_points"] = 100 * (row["accuracy"] - base["accuracy"])
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.machine()})",
        "torch": torch.__version__,
        "tapefit": tapefit.__version__,
        "threads": torch.get_num_threads(),
        "data": description,
        "n_train": n_train,
        "n_test": n_test,
        "epochs": epochs,
        "batch": batch,
        "jit_compile": jit,
        "seconds": time.perf_counter() - started,
        "comment": ""
        if device.type == "cuda"
        else "A CPU run at these sizes checks the code path: the models barely leave chance accuracy "
        "(`--n-train 4000 --epochs 3` reaches about 0.8 in a few minutes), and CPUs without bf16 "
        "matrix units emulate bf16 convolutions, slowly. The GPU figures are what issue 6 asks for.",
    }
    return {"meta": meta, "rows": rows}


def _cell(row: dict[str, Any], key: str, spec: str, suffix: str = "") -> str:
    value = row.get(key)
    return "" if value is None else format(value, spec) + suffix


def markdown(report: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md: a heading, what was run, and the table."""
    m = report["meta"]
    lines = [
        "## Mixed precision (issue 6)",
        "",
        f"Measured {m['date']} with `python -m bench.mixed_precision` ({m['seconds']:.0f} s) "
        f"on {m['device']}, torch {m['torch']}, tapefit {m['tapefit']}, {m['threads']} CPU threads. "
        "Seed 003's CNN (Conv32-Pool-Conv64-Pool-Dense256-Dense10 softmax), "
        f"batch {m['batch']}, "
        "SGD(0.01, momentum 0.9), "
        f"{m['epochs']} epochs over {m['n_train']:,} training images from the same initial weights and "
        f"shuffling seed; accuracy on {m['n_test']:,} held-out images; `jit_compile={m['jit_compile']!r}`"
        + (" (compiled on CUDA)" if m["jit_compile"] == "auto" else "")
        + ". Samples/s: the median epoch among epochs 2 to the last (the first includes "
        "compilation), the device synchronised at each epoch's end.",
        "",
        f"- Data: {m['data']}.",
        *([f"- {m['comment']}"] if m.get("comment") else []),
        "",
        "| policy | optimizer | held-out accuracy | vs float32 (points) | last epoch's loss | samples/s "
        "(median epoch 2+) | speed-up vs float32 | first epoch s | weights | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report["rows"]:
        scale = f", final loss scale {r['loss_scale']:g}" if r.get("loss_scale") is not None else ""
        cells = [
            r["policy"],
            r.get("optimizer", "") + scale,
            _cell(r, "accuracy", ".4f"),
            _cell(r, "accuracy_points", "+.2f"),
            _cell(r, "train_loss", ".4f"),
            _cell(r, "samples_per_s", ",.0f"),
            _cell(r, "speedup", ".2f", "x"),
            _cell(r, "first_epoch_s", ".1f"),
            ", ".join(r.get("weights", [])),
            r.get("note", ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mixed_precision", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--policies", help=f"comma-separated, from {', '.join(POLICIES)} (default: all)")
    parser.add_argument("--n-train", type=int, help="training images (CUDA 50000, else 1000)")
    parser.add_argument("--n-test", type=int, help="held-out images (CUDA 10000, else 500)")
    parser.add_argument("--epochs", type=int, help="epochs (CUDA 8, else 2); samples/s needs 2 or more")
    parser.add_argument("--batch", type=int, help=f"batch size (seed 003's {MODELS['cnn'].batch})")
    parser.add_argument("--data", default="auto", choices=["auto", "real", "synthetic"])
    parser.add_argument("--jit", default="auto", choices=["auto", "true", "false"], help="fit's jit_compile")
    parser.add_argument("--write", action="store_true", help="put the table in BENCHMARKS.md's section")
    args = parser.parse_args(argv)
    policies = [p.strip() for p in args.policies.split(",")] if args.policies else None
    jit = {"auto": "auto", "true": True, "false": False}[args.jit]
    report = run(policies, args.n_train, args.n_test, args.epochs, args.batch, args.data, jit)
    text = markdown(report)
    print()
    print(text)
    if args.write:
        from .report import write_section

        print(f"wrote {os.path.relpath(write_section(SECTION, text))}")


if __name__ == "__main__":
    main()
