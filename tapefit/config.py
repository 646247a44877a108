"""Global settings: the device models and data live on, the float type, the image layout.

Everything in tapefit that needs "the device" asks :func:`get_device`; nothing else decides
placement. The default is the best available device (CUDA, then CPU), chosen once.
"""

from __future__ import annotations

import os

import torch

__all__ = [
    "get_device",
    "set_device",
    "floatx",
    "set_floatx",
    "epsilon",
    "set_epsilon",
    "image_data_format",
    "set_image_data_format",
    "enable_op_determinism",
    "cudnn_autotune",
    "set_cudnn_autotune",
    "tapefit_home",
]

_device: torch.device | None = None
_floatx = "float32"
_epsilon = 1e-7
_image_data_format = "channels_last"
_cudnn_autotune = True
_benchmark_before: bool | None = None  # torch's flag before tapefit turned it on


def get_device() -> torch.device:
    """The device new weights, metric states and fitted data are placed on."""
    global _device
    if _device is None:
        if torch.cuda.is_available():
            # Under torchrun each process owns the GPU of its local rank.
            _device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
        else:
            _device = torch.device("cpu")
    return _device


def set_device(device: str | torch.device) -> None:
    """Choose the device for models and data created from now on (``"cpu"``, ``"cuda:1"``, ...).

    Example:
        >>> import tapefit
        >>> tapefit.config.set_device("cpu")
        >>> tapefit.config.get_device()
        device(type='cpu')
    """
    global _device
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"set_device({str(device)!r}): CUDA is not available on this machine; use 'cpu'.")
    _device = dev


def floatx() -> str:
    """The default float dtype name for new weights (Keras's ``floatx``)."""
    return _floatx


def set_floatx(value: str) -> None:
    global _floatx
    if value not in ("float16", "bfloat16", "float32", "float64"):
        raise ValueError(f"set_floatx: unknown float type {value!r}; use 'float32', 'float64', ...")
    _floatx = value


def epsilon() -> float:
    """The fuzz factor Keras adds to avoid division by zero (1e-7)."""
    return _epsilon


def set_epsilon(value: float) -> None:
    global _epsilon
    _epsilon = float(value)


def image_data_format() -> str:
    """``"channels_last"`` (Keras's default) or ``"channels_first"``."""
    return _image_data_format


def set_image_data_format(value: str) -> None:
    global _image_data_format
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"image_data_format must be 'channels_last' or 'channels_first', not {value!r}")
    _image_data_format = value


def enable_op_determinism() -> None:
    """Make torch pick deterministic kernels (slower on GPU: no atomics-based reductions).

    Sets ``torch.use_deterministic_algorithms(True)``, disables cuDNN benchmarking and sets
    ``CUBLAS_WORKSPACE_CONFIG`` so that cuBLAS is reproducible too. Expect GPU training to
    be slower, sometimes markedly for scatter/index_add-heavy models.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def cudnn_autotune() -> bool:
    """Whether fit/evaluate/predict on CUDA turn on cuDNN autotuning (see :func:`set_cudnn_autotune`)."""
    return _cudnn_autotune


def set_cudnn_autotune(enabled: bool) -> None:
    """Let cuDNN time its convolution algorithms for each new input shape and keep the fastest.

    TensorFlow autotunes by default; torch leaves ``torch.backends.cudnn.benchmark`` off. With
    this on (the default), ``fit``, ``evaluate`` and ``predict`` set that flag when they start on
    CUDA, unless deterministic algorithms are on (:func:`enable_op_determinism`). Turning it off
    puts back the flag tapefit changed and leaves it to you from then on, e.g. when input shapes
    change every batch (each new shape is timed once).
    """
    global _cudnn_autotune, _benchmark_before
    if not isinstance(enabled, bool):
        raise TypeError(f"set_cudnn_autotune takes True or False, not {enabled!r}")
    _cudnn_autotune = enabled
    if not enabled and _benchmark_before is not None:
        torch.backends.cudnn.benchmark = _benchmark_before
        _benchmark_before = None


def _autotune_for(device: torch.device) -> None:
    """Turn cuDNN autotuning on for a run on ``device``, as :func:`set_cudnn_autotune` says."""
    global _benchmark_before
    if (
        device.type == "cuda"
        and _cudnn_autotune
        and not torch.backends.cudnn.benchmark
        and not torch.backends.cudnn.deterministic
        and not torch.are_deterministic_algorithms_enabled()
    ):
        _benchmark_before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True


def tapefit_home() -> str:
    """Where datasets and other downloads are cached: ``$TAPEFIT_HOME`` or ``~/.tapefit``."""
    return os.environ.get("TAPEFIT_HOME") or os.path.join(os.path.expanduser("~"), ".tapefit")
