"""The workloads of issue 5 and the contenders each one runs.

Every workload builds its data once; its entries build their contender lazily, so a memory
probe (a fresh process per contender) builds only the one it measures. The first entry of each
workload is its reference: ratios are taken against it, within the same run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import tapefit

from . import airbench
from .references import (
    hand_evaluate,
    hand_fit,
    hand_predict,
    keras_contender,
    keras_spec,
    lightning_contender,
)
from .synthetic import cifar_like, jpeg_folder, mnist_like
from .timing import Contender
from .workloads import (
    MODELS,
    build_tapefit,
    check_twin,
    make_loss,
    make_optimizer,
    to_torch_layout,
    torch_twin,
)

__all__ = ["Settings", "Entry", "Workload", "WORKLOADS"]

IMAGE_SIZE = (64, 64)


@dataclass
class Settings:
    """How much work one measurement does, and how often it is repeated."""

    steps: dict[str, int]  # batches per measurement, per model
    rounds: int  # interleaved measurements per contender
    warmup: int  # untimed runs per contender before the rounds
    threads: int  # torch.set_num_threads, the same for every contender (workers included)
    keras: bool = True
    images: int = 500
    pipeline_repeats: int = 5
    scratch: str = ""  # a temporary folder (the JPEGs)


@dataclass
class Entry:
    """A contender to be built: ``make`` builds it; ``keras`` is the worker spec when it is Keras;
    ``against`` names the contender its ratio is taken against (default: the workload's reference)."""

    name: str
    make: Callable[[], Contender]
    reference: bool = False
    keras: Callable[[], dict[str, Any]] | None = None
    against: str = ""


@dataclass
class Workload:
    name: str
    title: str
    entries: Callable[[Settings], list[Entry]] | None = None
    direct: Callable[[Settings], list[dict[str, Any]]] | None = None  # rows it measures itself
    memory: bool = False
    cpu_ratio: bool = True  # False where a contender works on several threads (CPU time then overstates it)
    warmup: int | None = None  # untimed runs per contender before the rounds (default: the settings')


def _device() -> torch.device:
    return tapefit.config.get_device()


def _data(kind: str, settings: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(x, y, x_uint8)``: the model's float inputs, labels, and (MLP) the raw bytes seed 001 maps."""
    n = settings.steps[kind] * MODELS[kind].batch
    if kind == "mlp":
        x8, x, y = mnist_like(n)
        return x, y, x8
    x, y = cifar_like(n)
    return x, y, None


def _on_device(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).to(_device())


def _twin_inputs(
    kind: str, x: np.ndarray, y: np.ndarray, channels_last: bool = False
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model = build_tapefit(kind)
    twin = torch_twin(kind, model, channels_last)
    check_twin(kind, model, twin, x, channels_last)
    return twin, to_torch_layout(kind, x, channels_last), _on_device(y).reshape(-1)


def _hand_entry(kind: str, x: np.ndarray, y: np.ndarray, mode: str, tuned: bool = False) -> Entry:
    """The reference: the loop as torch users write it (NCHW images, torch's default optimizer
    implementation). ``tuned`` gives a second, non-reference row with the two speed-ups tapefit
    uses: ``foreach`` optimizer kernels and, for the CNN, channels_last memory layout; comparing
    tapefit with it separates tapefit's own overhead from those choices."""
    batch = MODELS[kind].batch
    extras = ([] if kind == "mlp" else ["channels_last"]) + (["foreach optimizer"] if mode == "fit" else [])
    name = f"hand-written torch loop ({mode})"
    if tuned:
        name = f"hand-written torch loop, {' + '.join(extras)} ({mode})"
    channels_last = tuned and kind == "cnn"

    def make() -> Contender:
        twin, xt, yt = _twin_inputs(kind, x, y, channels_last)
        work = {
            "fit": lambda: hand_fit(kind, twin, xt, yt, batch, foreach=True if tuned else None),
            "evaluate": lambda: hand_evaluate(kind, twin, xt, yt, batch),
            "predict": lambda: hand_predict(twin, xt, batch),
        }[mode]()
        return Contender(name, work, _device(), reference=not tuned)

    return Entry(name, make, reference=not tuned)


def _hand_entries(kind: str, x: np.ndarray, y: np.ndarray, mode: str) -> list[Entry]:
    out = [_hand_entry(kind, x, y, mode)]
    if kind == "cnn" or mode == "fit":
        out.append(_hand_entry(kind, x, y, mode, tuned=True))
    return out


def _tapefit_entry(kind: str, x: np.ndarray, y: np.ndarray, mode: str, train_step: bool = False) -> Entry:
    batch = MODELS[kind].batch
    name = "tapefit fit() with overridden train_step" if train_step else f"tapefit {mode}()"

    def make() -> Contender:
        model = build_tapefit(kind, train_step=train_step)
        xt, yt = _on_device(x), _on_device(y)

        def work() -> int:
            if mode == "fit":
                model.fit(xt, yt, batch_size=batch, epochs=1, verbose=0, shuffle=True)
            elif mode == "evaluate":
                model.evaluate(xt, yt, batch_size=batch, verbose=0)
            else:
                model.predict(xt, batch_size=batch, verbose=0)
            return len(x)

        return Contender(name, work, _device())

    return Entry(name, make)


def _tape_entry(kind: str, x: np.ndarray, y: np.ndarray, x8: np.ndarray | None) -> Entry:
    """Seed 001's shape: a GradientTape loop over a ``tapefit.data.Dataset``, the metric read once
    per epoch."""
    batch, name = MODELS[kind].batch, "tapefit GradientTape loop over tapefit.data.Dataset"

    def make() -> Contender:
        model = build_tapefit(kind, compiled=False)
        optimizer, loss_fn = make_optimizer(kind), make_loss(kind)
        accuracy = tapefit.metrics.SparseCategoricalAccuracy()
        data = tapefit.data
        # Seed 001's chain for the MLP: uint8 -> map(normalize) -> cache -> shuffle -> batch -> prefetch.
        if x8 is not None:
            ds = data.Dataset.from_tensor_slices((x8, y))
            ds = ds.map(lambda image, label: (image.float() / 255.0, label), num_parallel_calls=data.AUTOTUNE)
            ds = ds.cache().shuffle(len(y)).batch(batch).prefetch(data.AUTOTUNE)
        else:  # seed 003's float arrays
            ds = data.Dataset.from_tensor_slices((x, y)).shuffle(len(y)).batch(batch)

        def epoch() -> int:
            for xb, yb in ds:
                with tapefit.GradientTape() as tape:
                    y_pred = model(xb, training=True)
                    loss = loss_fn(yb, y_pred)
                gradients = tape.gradient(loss, model.trainable_weights)
                optimizer.apply_gradients(zip(gradients, model.trainable_weights))
                accuracy.update_state(yb, y_pred)
            _ = float(accuracy.result())  # read once per epoch
            accuracy.reset_state()
            return len(y)

        return Contender(name, epoch, _device())

    return Entry(name, make)


def _keras_entry(kind: str, x: np.ndarray, mode: str, settings: Settings) -> Entry:
    name, batch, n = f"Keras 3 {mode}() (torch backend)", MODELS[kind].batch, len(x)

    def make() -> Contender:
        weights = build_tapefit(kind, compiled=False).get_weights()
        return keras_contender(name, keras_spec(kind, mode, n, batch, settings.threads, weights))

    return Entry(name, make, keras=lambda: keras_spec(kind, mode, n, batch, settings.threads, None))


def _lightning_entry(kind: str, x: np.ndarray, y: np.ndarray) -> Entry:
    name = "Lightning Trainer.fit()"

    def make() -> Contender:
        twin, xt, yt = _twin_inputs(kind, x, y)
        return lightning_contender(name, kind, twin, xt, yt, MODELS[kind].batch)

    return Entry(name, make)


def _fit_entries(kind: str) -> Callable[[Settings], list[Entry]]:
    def entries(settings: Settings) -> list[Entry]:
        x, y, _ = _data(kind, settings)
        out = [*_hand_entries(kind, x, y, "fit"), _tapefit_entry(kind, x, y, "fit")]
        if settings.keras:
            out.append(_keras_entry(kind, x, "fit", settings))
        return out + [_lightning_entry(kind, x, y)]

    return entries


def _custom_entries(kind: str) -> Callable[[Settings], list[Entry]]:
    def entries(settings: Settings) -> list[Entry]:
        x, y, x8 = _data(kind, settings)
        return [
            *_hand_entries(kind, x, y, "fit"),
            _tapefit_entry(kind, x, y, "fit", train_step=True),
            _tape_entry(kind, x, y, x8),
        ]

    return entries


def _inference_entries(kind: str, mode: str) -> Callable[[Settings], list[Entry]]:
    def entries(settings: Settings) -> list[Entry]:
        x, y, _ = _data(kind, settings)
        out = [*_hand_entries(kind, x, y, mode), _tapefit_entry(kind, x, y, mode)]
        if settings.keras:
            out.append(_keras_entry(kind, x, mode, settings))
        return out

    return entries


def _image_entries(settings: Settings) -> list[Entry]:
    from PIL import Image

    folder = os.path.join(settings.scratch, f"jpegs-{settings.images}")
    if not os.path.isdir(folder):
        jpeg_folder(folder, settings.images)
    batch = 32

    def plain() -> Contender:
        classes = sorted(os.listdir(folder))
        files = [
            (os.path.join(folder, c, f), i)
            for i, c in enumerate(classes)
            for f in sorted(os.listdir(os.path.join(folder, c)))
        ]
        paths = [p for p, _ in files]
        labels = np.array([label for _, label in files], dtype=np.int64)
        size = (IMAGE_SIZE[1], IMAGE_SIZE[0])

        def epoch() -> int:
            order = np.random.permutation(len(paths))
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                images = [
                    np.asarray(
                        Image.open(paths[i]).convert("RGB").resize(size, Image.Resampling.BILINEAR),
                        dtype=np.float32,
                    )
                    for i in idx
                ]
                _ = torch.from_numpy(np.stack(images)), torch.from_numpy(labels[idx])
            return len(paths)

        return Contender("plain PIL loop (decode, resize, stack)", epoch, torch.device("cpu"), reference=True)

    def ours() -> Contender:
        ds = tapefit.utils.image_dataset_from_directory(
            folder, image_size=IMAGE_SIZE, batch_size=batch, shuffle=True, seed=0, verbose=False
        )

        def epoch() -> int:
            return sum(len(yb) for _, yb in ds)

        return Contender("tapefit image_dataset_from_directory", epoch, torch.device("cpu"))

    return [
        Entry("plain PIL loop (decode, resize, stack)", plain, reference=True),
        Entry("tapefit image_dataset_from_directory", ours),
    ]


def _pipeline_rows(settings: Settings) -> list[dict[str, Any]]:
    from . import pipeline

    rows = []
    for row in pipeline.run(repeats=settings.pipeline_repeats):
        rows.append(
            {
                "contender": row["pipeline"],
                "reference": row["pipeline"] == "raw torch index gather",
                "samples_per_s": row["samples_per_s"],
                "best_samples_per_s": row["samples_per_s"],
                "ratio": row["ratio"],
                "note": row["note"]
                or f"best of {settings.pipeline_repeats} interleaved epochs (bench/pipeline.py)",
            }
        )
    return rows


def _title(kind: str, what: str) -> str:
    return f"{what}: {MODELS[kind].description}"


WORKLOADS: list[Workload] = [
    Workload("mlp", _title("mlp", "1. fit(), overhead-bound"), _fit_entries("mlp"), memory=True),
    Workload("cnn", _title("cnn", "2. fit(), compute-bound"), _fit_entries("cnn"), memory=True),
    Workload(
        "mlp_custom",
        _title("mlp", "3. train_step override and GradientTape loop"),
        _custom_entries("mlp"),
        memory=True,
    ),
    Workload(
        "cnn_custom",
        _title("cnn", "3. train_step override and GradientTape loop"),
        _custom_entries("cnn"),
        memory=True,
    ),
    Workload("mlp_evaluate", _title("mlp", "4. evaluate()"), _inference_entries("mlp", "evaluate")),
    Workload("mlp_predict", _title("mlp", "4. predict()"), _inference_entries("mlp", "predict")),
    Workload("cnn_evaluate", _title("cnn", "4. evaluate()"), _inference_entries("cnn", "evaluate")),
    Workload("cnn_predict", _title("cnn", "4. predict()"), _inference_entries("cnn", "predict")),
    Workload(
        "pipeline",
        "5. input pipeline alone: one MNIST-shaped epoch (60000 x 28x28 uint8), shuffle + batch 32",
        direct=_pipeline_rows,
    ),
    Workload(
        "images",
        f"5. image-folder decoding: small JPEGs (72x96) resized to {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, batch 32",
        _image_entries,
        cpu_ratio=False,
    ),
    # Compiled train steps settle after a few calls (recompiles; see bench/airbench.py).
    Workload("airbench", airbench.TITLE, airbench.entries, warmup=2),
]
