import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import tapefit  # noqa: E402


@pytest.fixture(autouse=True)
def _cpu_and_seeded():
    """Every test starts on the CPU with fixed seeds, so failures reproduce."""
    tapefit.config.set_device("cpu")
    torch.manual_seed(0)
    yield


@pytest.fixture
def on_meta():
    """Place new weights, metric states and fitted data on the meta device: tensors with shapes
    but no data, so any read of a value back to the host raises (how a CUDA sync would show)."""
    before = tapefit.config.get_device()
    tapefit.config.set_device("meta")
    yield
    tapefit.config.set_device(before)


@pytest.fixture
def no_host_to_device(monkeypatch):
    """From the returned ``arm()`` on, host data copied to a device raises (on CUDA a blocking
    host-to-device copy waits for the stream)."""
    armed: list[bool] = []
    original_to = torch.Tensor.to

    def guard(original):
        def guarded(data, *args, **kwargs):
            out = original(data, *args, **kwargs)
            if armed and not isinstance(data, torch.Tensor) and out.device.type != "cpu":
                raise AssertionError(f"host data copied to {out.device}: {data!r}")
            return out

        return guarded

    def guarded_to(self, *args, **kwargs):
        out = original_to(self, *args, **kwargs)
        if armed and self.device.type == "cpu" and out.device.type != "cpu":
            raise AssertionError(f"a host tensor of shape {tuple(self.shape)} was copied to {out.device}")
        return out

    monkeypatch.setattr(torch, "as_tensor", guard(torch.as_tensor))
    monkeypatch.setattr(torch, "tensor", guard(torch.tensor))
    monkeypatch.setattr(torch.Tensor, "to", guarded_to)
    return lambda: armed.append(True)
