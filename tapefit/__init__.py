"""tapefit: Keras ergonomics and semantics, trained by PyTorch.

Build a model three ways (``Sequential``, the functional API with ``Input``, or a ``Model``
subclass with ``call()``) and train it with ``fit()``, with your own ``train_step``, or in your
own loop with ``GradientTape``. Every model is a ``torch.nn.Module``.
"""

__version__ = "0.1.0"

from . import (  # noqa: E402
    activations,
    applications,
    callbacks,
    config,
    constraints,
    data,
    datasets,
    distribute,
    initializers,
    layers,
    losses,
    metrics,
    mixed_precision,
    models,
    optimizers,
    regularizers,
    saving,
    utils,
)
from .jit import function  # noqa: E402
from .layers import Input  # noqa: E402
from .models import Model, Sequential  # noqa: E402
from .tape import GradientTape  # noqa: E402
from .variables import Variable  # noqa: E402

__all__ = [
    "GradientTape",
    "Input",
    "Model",
    "Sequential",
    "Variable",
    "__version__",
    "activations",
    "applications",
    "callbacks",
    "config",
    "constraints",
    "data",
    "datasets",
    "distribute",
    "function",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "mixed_precision",
    "models",
    "optimizers",
    "regularizers",
    "saving",
    "utils",
]
