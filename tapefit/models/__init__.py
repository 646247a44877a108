"""Models: ``Model`` (subclassing and functional), ``Sequential``, ``clone_model``, ``load_model``."""

from ..saving import load_model
from .cloning import clone_model
from .model import Functional, Model
from .sequential import Sequential

__all__ = ["Functional", "Model", "Sequential", "clone_model", "load_model"]
