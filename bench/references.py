"""The references tapefit is measured against.

- The hand-written torch loop people write: batches by index from tensors already in memory,
  ``zero_grad(set_to_none=True)``, forward, loss, ``backward``, ``step``; the loss and the
  accuracy accumulate on the device and are read once per epoch. Evaluation and prediction are
  the same under ``torch.no_grad()``.
- Keras 3 on its torch backend, in a worker process (``bench/keras_worker.py``).
- Lightning, when importable (it is not a dependency: otherwise a skipped row with a note).
- tf.data appears in the input-pipeline workload (``bench/pipeline.py``), when TensorFlow is importable.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .timing import Contender, Measurement, Skipped
from .workloads import torch_loss

__all__ = [
    "hand_fit",
    "train_epoch",
    "hand_evaluate",
    "hand_predict",
    "KerasContender",
    "close_keras_worker",
    "keras_contender",
    "lightning_contender",
    "REPO_ROOT",
]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _optimizer(kind: str, net: nn.Module, foreach: bool | None = None) -> torch.optim.Optimizer:
    """torch's Adam / SGD; ``foreach=None`` is torch's default (the per-tensor loop on CPU)."""
    if kind == "mlp":
        return torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7, foreach=foreach)
    return torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, foreach=foreach)


def hand_fit(
    kind: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, foreach: bool | None = None
) -> Callable[[], int]:
    """One shuffled epoch over ``(x, y)`` per call, written the way a torch user writes it."""
    opt = _optimizer(kind, net, foreach)
    return train_epoch(net, opt, lambda out, yb: torch_loss(kind, out, yb), x, y, batch)


def train_epoch(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    autocast: torch.dtype | None = None,
) -> Callable[[], int]:
    """The hand-written loop: one shuffled epoch per call; ``autocast`` wraps forward and loss."""
    n = len(x)
    device = x.device

    def epoch() -> int:
        net.train()
        perm = torch.randperm(n, device=device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            if autocast is None:
                out = net(xb)
                loss = loss_fn(out, yb)
            else:
                with torch.autocast(device.type, dtype=autocast):
                    out = net(xb)
                    loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            correct += (out.argmax(1) == yb).sum()
        _ = (loss_sum / -(-n // batch)).item(), (correct / n).item()  # read once per epoch
        return n

    return epoch


def hand_evaluate(
    kind: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int
) -> Callable[[], int]:
    """Loss and accuracy over ``(x, y)`` in order, under ``no_grad``, read once at the end."""
    n = len(x)

    def evaluate() -> int:
        net.eval()
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        with torch.no_grad():
            for start in range(0, n, batch):
                xb, yb = x[start : start + batch], y[start : start + batch]
                out = net(xb)
                loss_sum += torch_loss(kind, out, yb) * len(yb)
                correct += (out.argmax(1) == yb).sum()
        _ = (loss_sum / n).item(), (correct / n).item()
        return n

    return evaluate


def hand_predict(net: nn.Module, x: torch.Tensor, batch: int) -> Callable[[], int]:
    """Outputs for every row of ``x`` under ``no_grad``, concatenated into one numpy array."""
    n = len(x)

    def predict() -> int:
        net.eval()
        with torch.no_grad():
            outs = [net(x[start : start + batch]) for start in range(0, n, batch)]
        return len(torch.cat(outs).cpu().numpy())

    return predict


class _KerasWorker:
    """The ``bench.keras_worker`` process, started once per run and shared by the Keras rows."""

    def __init__(self) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.keras_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": REPO_ROOT},
        )
        self.owner: object | None = None

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def ask(self, line: str) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        answer = ""
        if self.alive:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline()
        if not answer:
            self._stderr.seek(0)
            tail = self._stderr.read()[-400:].strip().replace("\n", " | ")
            raise RuntimeError(f"the Keras worker exited: {tail}")
        return json.loads(answer)

    def close(self) -> None:
        if self.alive:
            try:
                self._proc.communicate("quit\n", timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()


_worker: _KerasWorker | None = None


def _shared_worker() -> _KerasWorker:
    global _worker
    if _worker is None or not _worker.alive:
        _worker = _KerasWorker()
    return _worker


def close_keras_worker() -> None:
    """Stop the shared Keras worker (the suite calls this when a run ends)."""
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None


class KerasContender(Contender):
    """Keras 3 (torch backend) doing the work in the shared worker process; timed there."""

    def __init__(self, name: str, spec: dict[str, Any]):
        super().__init__(name, lambda: 0, torch.device("cpu"))
        self._spec = dict(spec)
        self._worker = _shared_worker()
        self.version = self._load()
        self._spec["weights"] = None  # loaded once; a reload (see measure) keeps Keras's own init

    def _load(self) -> str:
        reply = self._worker.ask(json.dumps(self._spec))
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "the Keras worker did not start"))
        self._worker.owner = self
        return reply["keras"]

    def measure(self) -> Measurement:
        if self._worker.owner is not self:  # another Keras row used the worker since
            self._load()
        reply = self._worker.ask("run")
        return Measurement(int(reply["samples"]), float(reply["seconds"]), float(reply["cpu_seconds"]))


def keras_spec(
    kind: str, mode: str, n: int, batch: int, threads: int, weights: list[np.ndarray] | None
) -> dict:
    """The worker's work description; the weights travel through a temporary .npz file."""
    path = None
    if weights is not None:
        fd, path = tempfile.mkstemp(suffix=".npz", prefix="bench-keras-")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{f"w{i}": w for i, w in enumerate(weights)})
    return {
        "kind": kind,
        "mode": mode,
        "n": n,
        "batch": batch,
        "threads": threads,
        "seed": 0,
        "weights": path,
    }


def keras_contender(name: str, spec: dict[str, Any]) -> Contender:
    """A :class:`KerasContender`, or a skipped row saying why Keras cannot run."""
    try:
        if importlib.util.find_spec("keras") is None:
            return Skipped(name, "skipped: keras is not installed")
        return KerasContender(name, spec)
    except Exception as e:
        return Skipped(name, f"skipped: {e}")
    finally:
        if spec.get("weights"):
            os.unlink(spec["weights"])  # the worker has loaded them (or failed)
            spec["weights"] = None


def lightning_contender(
    name: str, kind: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int
) -> Contender:
    """Lightning's ``Trainer.fit`` over a shuffled ``DataLoader(TensorDataset)``, when importable."""
    module_name = next((m for m in ("lightning.pytorch", "pytorch_lightning") if _importable(m)), None)
    if module_name is None:
        return Skipped(name, "skipped: lightning is not installed (optional reference)")
    pl = importlib.import_module(module_name)

    class _Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, data: Any, _: int) -> torch.Tensor:
            xb, yb = data
            out = self.net(xb)
            loss = torch_loss(kind, out, yb)
            self.log("loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return _optimizer(kind, self.net)

    module = _Module()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True)

    def epoch() -> int:
        trainer = pl.Trainer(
            max_epochs=1,
            accelerator="gpu" if x.device.type == "cuda" else "cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, loader)
        return len(x)

    return Contender(name, epoch, x.device)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
