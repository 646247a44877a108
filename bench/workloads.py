"""The benchmark's models: tapefit builders and identical plain-torch twins.

Two models, as issue 5 names them: ``mlp`` (784-128-10 on MNIST-shaped data, batch 32, Adam,
logits + sparse categorical cross-entropy: overhead-bound) and ``cnn`` (seed 003's CIFAR-10
CNN, batch 200, SGD with momentum, softmax output: compute-bound). Each torch twin gets the
tapefit model's weights copied in (Keras layouts turned into torch's), and :func:`check_twin`
verifies that both compute the same function, so the contenders do the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import tapefit
from tapefit import layers

__all__ = ["ModelSpec", "MODELS", "TrainStepModel", "build_tapefit", "torch_twin", "check_twin", "torch_loss"]

_EPS = 1e-7  # Keras's epsilon: the clip of probabilities inside its cross-entropy


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model: its batch size and how the contenders build and train it."""

    name: str
    batch: int
    description: str


MODELS = {
    "mlp": ModelSpec("mlp", 32, "MLP 784-128-10, MNIST-shaped (28x28 float32), batch 32, Adam"),
    "cnn": ModelSpec(
        "cnn",
        200,
        "seed 003 CNN (Conv32-Pool-Conv64-Pool-Dense256-Dense10 softmax), CIFAR-shaped (32x32x3), "
        "batch 200, SGD(0.01, momentum 0.9)",
    ),
}


class TrainStepModel(tapefit.Model):
    """A Model subclass with its own ``train_step``: Keras 3's "customize what happens in fit" shape."""

    def __init__(self, inner: tapefit.Model):
        super().__init__()
        self.inner = inner

    def call(self, x: Any, training: bool = False) -> Any:
        return self.inner(x, training=training)

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y = data
        with tapefit.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        trainable = self.trainable_weights
        gradients = tape.gradient(loss, trainable)
        self.optimizer.apply_gradients(zip(gradients, trainable))
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def _layers(kind: str) -> list[Any]:
    if kind == "mlp":
        return [
            tapefit.Input((28, 28)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
        ]
    return [
        tapefit.Input((32, 32, 3)),
        layers.Conv2D(32, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ]


def make_optimizer(kind: str) -> Any:
    if kind == "mlp":
        return tapefit.optimizers.Adam()
    return tapefit.optimizers.SGD(learning_rate=0.01, momentum=0.9)


def make_loss(kind: str) -> Any:
    return tapefit.losses.SparseCategoricalCrossentropy(from_logits=kind == "mlp")


def build_tapefit(kind: str, train_step: bool = False, compiled: bool = True, seed: int = 0) -> tapefit.Model:
    """The tapefit model (a ``Sequential``, or one wrapped in :class:`TrainStepModel`), compiled.

    ``jit_compile=False``: these rows compare eager steps with the eager hand loop on every
    device ("auto" would compile on CUDA); the airbench workload pairs compiled with compiled.
    """
    tapefit.utils.set_random_seed(seed)
    model: tapefit.Model = tapefit.Sequential(_layers(kind))
    if train_step:
        model = TrainStepModel(model)
    if compiled:
        model.compile(
            optimizer=make_optimizer(kind), loss=make_loss(kind), metrics=["accuracy"], jit_compile=False
        )
    return model


class _CNN(nn.Module):
    """The CNN as a torch user writes it: NCHW data, ``nn.Conv2d``, flatten in (C, H, W) order."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 8 * 8, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.softmax(self.fc2(x), dim=1)


class _ChannelsLast(nn.Module):
    """The CNN fed NHWC batches as channels_last views: torch's recipe for channels_last convolutions."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float()


def torch_twin(kind: str, model: tapefit.Model, channels_last: bool = False) -> nn.Module:
    """A plain torch module computing the same function, with ``model``'s weights copied in.

    With ``channels_last`` (CNN only) it takes NHWC batches, as the tapefit model does.
    """
    w = model.get_weights()
    with torch.no_grad():
        if kind == "mlp":
            net: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
            net[1].weight.copy_(_tensor(w[0].T))
            net[1].bias.copy_(_tensor(w[1]))
            net[3].weight.copy_(_tensor(w[2].T))
            net[3].bias.copy_(_tensor(w[3]))
        else:
            net = _CNN()
            net.conv1.weight.copy_(_tensor(w[0].transpose(3, 2, 0, 1)))
            net.conv1.bias.copy_(_tensor(w[1]))
            net.conv2.weight.copy_(_tensor(w[2].transpose(3, 2, 0, 1)))
            net.conv2.bias.copy_(_tensor(w[3]))
            # Keras flattens (H, W, C); the torch twin flattens (C, H, W): reorder the kernel's rows.
            kernel = w[4].reshape(8, 8, 64, 256).transpose(2, 0, 1, 3).reshape(4096, 256)
            net.fc1.weight.copy_(_tensor(kernel.T))
            net.fc1.bias.copy_(_tensor(w[5]))
            net.fc2.weight.copy_(_tensor(w[6].T))
            net.fc2.bias.copy_(_tensor(w[7]))
            if channels_last:
                net = _ChannelsLast(net)
    return net.to(tapefit.config.get_device())


def torch_loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss a torch user writes for this model (the CNN's softmax output: clipped log + NLL, as Keras)."""
    if kind == "mlp":
        return F.cross_entropy(out, y)
    return F.nll_loss(torch.log(out.clamp(_EPS, 1 - _EPS)), y)


def to_torch_layout(kind: str, x: np.ndarray, channels_last: bool = False) -> torch.Tensor:
    """The reference's copy of the inputs: NCHW for the CNN (converted once, as torch users store
    images), or NHWC as given for a ``channels_last`` twin."""
    t = torch.from_numpy(x)
    if kind == "cnn" and not channels_last:
        t = t.permute(0, 3, 1, 2).contiguous()
    return t.to(tapefit.config.get_device())


def check_twin(
    kind: str, model: tapefit.Model, twin: nn.Module, x: np.ndarray, channels_last: bool = False
) -> None:
    """Raise if the twin does not compute the tapefit model's function (the timings would compare
    different work)."""
    with torch.no_grad():
        ours = model(torch.from_numpy(x[:8]).to(tapefit.config.get_device()), training=False)
        theirs = twin(to_torch_layout(kind, x[:8], channels_last))
    if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5):
        diff = (ours - theirs).abs().max().item()
        raise RuntimeError(f"bench: the torch twin of {kind!r} differs from the tapefit model by {diff:g}")
