"""Saving and loading: safetensors weights, ``.tapefit`` model files, the class allowlist, and
Keras 3 ``.keras`` / ``.weights.h5`` files."""

from .keras_format import KerasFormatError, load_weights
from .model_file import load_model, save_model
from .registry import get_registered_name, get_registered_object, register_serializable
from .serialization import SafeModeError
from .weights import save_weights

__all__ = [
    "KerasFormatError",
    "SafeModeError",
    "get_registered_name",
    "get_registered_object",
    "load_model",
    "register_serializable",
    "save_model",
    "load_weights",
    "save_weights",
]
