"""Preprocessing layers that run on batches on the model's device.

Deterministic: ``Rescaling``, ``Normalization`` and ``Discretization`` (with ``adapt``),
``CategoryEncoding``, ``Resizing``, ``CenterCrop``.
Augmentation, active only when ``training`` is True: ``RandomFlip``, ``RandomCrop``,
``RandomTranslation``, ``RandomRotation``, ``RandomZoom``, ``RandomContrast``.
"""

from .category_encoding import CategoryEncoding
from .discretization import Discretization
from .normalization import Normalization
from .random_contrast import RandomContrast
from .random_crop import RandomCrop
from .random_flip import RandomFlip
from .random_rotation import RandomRotation
from .random_translation import RandomTranslation
from .random_zoom import RandomZoom
from .rescaling import Rescaling
from .resizing import CenterCrop, Resizing

__all__ = [
    "CategoryEncoding",
    "CenterCrop",
    "Discretization",
    "Normalization",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "Rescaling",
    "Resizing",
]
