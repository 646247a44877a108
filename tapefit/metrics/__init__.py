"""Metrics with Keras 3's names, arguments and numbers; state lives on the device as tensors.

``get`` resolves what ``compile(metrics=...)`` accepts: names (``"mse"``, ``"auc"``,
``"SparseCategoricalAccuracy"``), classes, instances, functions and config dicts.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable
from typing import Any

from .._naming import to_snake_case, unknown_name_error
from ._utils import object_name
from .accuracy_metrics import (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    accuracy,
    binary_accuracy,
    categorical_accuracy,
    sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)
from .auc_metrics import AUC
from .confusion_metrics import FalseNegatives, FalsePositives, Precision, Recall, TrueNegatives, TruePositives
from .f_score_metrics import F1Score, FBetaScore
from .iou_metrics import BinaryIoU, IoU, MeanIoU, OneHotIoU, OneHotMeanIoU
from .metric import Metric
from .probabilistic_metrics import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    CategoricalHinge,
    Hinge,
    KLDivergence,
    Poisson,
    SparseCategoricalCrossentropy,
    SquaredHinge,
)
from .reduction_metrics import Mean, MeanMetricWrapper, Sum
from .regression_metrics import (
    CosineSimilarity,
    LogCoshError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    RootMeanSquaredError,
)

__all__ = [
    "Metric",
    "Mean",
    "Sum",
    "MeanMetricWrapper",
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
    "TruePositives",
    "FalsePositives",
    "TrueNegatives",
    "FalseNegatives",
    "Precision",
    "Recall",
    "AUC",
    "F1Score",
    "FBetaScore",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "RootMeanSquaredError",
    "LogCoshError",
    "CosineSimilarity",
    "IoU",
    "MeanIoU",
    "BinaryIoU",
    "OneHotIoU",
    "OneHotMeanIoU",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "KLDivergence",
    "Poisson",
    "Hinge",
    "SquaredHinge",
    "CategoricalHinge",
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "get",
    "serialize",
    "deserialize",
]

ALL_OBJECTS = (
    Metric,
    Mean,
    Sum,
    MeanMetricWrapper,
    MeanSquaredError,
    RootMeanSquaredError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError,
    CosineSimilarity,
    LogCoshError,
    AUC,
    FalseNegatives,
    FalsePositives,
    Precision,
    Recall,
    TrueNegatives,
    TruePositives,
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    F1Score,
    FBetaScore,
    IoU,
    BinaryIoU,
    MeanIoU,
    OneHotIoU,
    OneHotMeanIoU,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    KLDivergence,
    Poisson,
    Hinge,
    SquaredHinge,
    CategoricalHinge,
)
ALL_OBJECTS_DICT: dict[str, type[Metric]] = {cls.__name__: cls for cls in ALL_OBJECTS}
ALL_OBJECTS_DICT.update({to_snake_case(cls.__name__): cls for cls in ALL_OBJECTS})
ALL_OBJECTS_DICT.update(
    {
        "acc": Accuracy,
        "bce": BinaryCrossentropy,
        "BCE": BinaryCrossentropy,
        "mse": MeanSquaredError,
        "MSE": MeanSquaredError,
        "mae": MeanAbsoluteError,
        "MAE": MeanAbsoluteError,
        "mape": MeanAbsolutePercentageError,
        "MAPE": MeanAbsolutePercentageError,
        "msle": MeanSquaredLogarithmicError,
        "MSLE": MeanSquaredLogarithmicError,
        "rmse": RootMeanSquaredError,
        "mean_iou": MeanIoU,
        "iou": IoU,
        "binary_iou": BinaryIoU,
        "f1": F1Score,
        "fbeta_score": FBetaScore,
    }
)

_custom_objects: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "custom_objects", default=None
)
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    fn.__name__: fn
    for fn in (
        accuracy,
        binary_accuracy,
        categorical_accuracy,
        sparse_categorical_accuracy,
        top_k_categorical_accuracy,
        sparse_top_k_categorical_accuracy,
    )
}


def _registry() -> Any:
    from ..saving import registry

    return registry


def _function_table() -> dict[str, Callable[..., Any]]:
    """The functions a config may name: the metric functions and tapefit's own loss functions
    (``compile(metrics=[tapefit.losses.mean_squared_error])`` saves one), by name, never by module."""
    from ..losses import serialization as loss_serialization

    return {**loss_serialization._FUNCTIONS, **_FUNCTIONS}


def serialize(metric: Metric | Callable[..., Any]) -> dict[str, Any]:
    """A JSON-able description of a metric instance (class name and config) or a metric function.

    Custom classes and functions are saved under their registered name (see
    ``tapefit.saving.register_serializable``) when they have one, else under their own name, to be
    passed back in ``custom_objects``.

    Example:
        >>> serialize(Precision(thresholds=0.7, name="p"))["config"]["thresholds"]
        0.7
    """
    if isinstance(metric, Metric):
        cls = type(metric)
        builtin = ALL_OBJECTS_DICT.get(cls.__name__) is cls
        return {
            "module": "tapefit.metrics",
            "class_name": cls.__name__,
            "config": metric.get_config(),
            "registered_name": None if builtin else _saved_name(cls),
        }
    name = getattr(metric, "__name__", None)
    if name is None or not callable(metric):
        raise ValueError(f"Cannot serialize {metric!r}: expected a Metric instance or a named function.")
    saved = name if _function_table().get(name) is metric else _saved_name(metric)
    return {
        "module": getattr(metric, "__module__", None),
        "class_name": "function",
        "config": saved,
        "registered_name": saved,
    }


def _saved_name(obj: Any) -> str:
    try:
        return _registry().registered_name(obj)
    except ValueError:
        return obj.__name__  # found again only through custom_objects


def deserialize(config: dict[str, Any] | str, custom_objects: dict[str, Any] | None = None) -> Any:
    """Rebuild a metric (or metric function) from :func:`serialize`'s output or a plain name.

    Names resolve only from tapefit's own metrics and metric/loss functions, ``custom_objects``
    and the objects registered with ``tapefit.saving.register_serializable``; the ``module`` a
    config names is never imported. ``custom_objects`` also reaches nested configs (the ``fn``
    of a ``MeanMetricWrapper``).
    """
    custom_objects = {**(_custom_objects.get() or {}), **(custom_objects or {})}
    token = _custom_objects.set(custom_objects)
    try:
        return _deserialize(config, custom_objects)
    finally:
        _custom_objects.reset(token)


def _deserialize(config: dict[str, Any] | str, custom_objects: dict[str, Any]) -> Any:
    if isinstance(config, str):
        return _lookup(config, custom_objects)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"Cannot deserialize metric config {config!r}: expected a dict with 'class_name' "
            "and 'config' (the output of tapefit.metrics.serialize)."
        )
    class_name, inner = config["class_name"], config.get("config", {})
    if class_name == "function":
        if not isinstance(inner, str):
            raise ValueError(f"A serialized metric function needs its name under 'config', not {inner!r}.")
        return _lookup_function(inner, config.get("module"), custom_objects)
    cls = _lookup(config.get("registered_name") or class_name, custom_objects)
    if not (inspect.isclass(cls) and issubclass(cls, Metric)):
        raise ValueError(f"Cannot deserialize {class_name!r}: it is not a Metric class.")
    return cls.from_config(inner)


def _lookup_function(name: str, module: str | None, custom_objects: dict[str, Any]) -> Callable[..., Any]:
    """A function from custom_objects, tapefit's table or the registry; ``module`` is only quoted."""
    fn = custom_objects.get(name) or _function_table().get(name) or _registry().get_registered_object(name)
    if fn is not None and callable(fn) and not inspect.isclass(fn):
        return fn
    short = name.rsplit(">", 1)[-1].rsplit(".", 1)[-1]
    where = f"{module}.{name}" if module else name
    raise ValueError(
        f"Unknown metric function {where!r} in a saved config: only tapefit's own metric and loss "
        "functions, functions registered with @tapefit.saving.register_serializable() and those passed "
        f"in custom_objects={{{name!r}: {short}}} can be loaded (the module a file names is never "
        "imported, with safe_mode=False too)."
    )


def _lookup(name: str, custom_objects: dict[str, Any]) -> Any:
    if name in custom_objects:
        return custom_objects[name]
    if name in ALL_OBJECTS_DICT:
        return ALL_OBJECTS_DICT[name]
    if name in _FUNCTIONS:
        return _FUNCTIONS[name]
    registered = _registry().get_registered_object(name)
    if registered is not None:
        return registered
    known = sorted(set(ALL_OBJECTS_DICT) | set(custom_objects))
    raise ValueError(
        f"{unknown_name_error('metric', name, known)} A custom metric must be registered with "
        "@tapefit.saving.register_serializable() or passed in custom_objects= to be loaded."
    )


def get(identifier: Any) -> Metric | None:
    """Resolve a metric identifier to a ``Metric`` instance (``None`` stays ``None``).

    Strings name a class (``"SparseCategoricalAccuracy"``, ``"sparse_categorical_accuracy"``,
    ``"mse"``, ``"auc"``...; ``"accuracy"`` is plain :class:`Accuracy`, as in ``keras.metrics.get``:
    choosing the binary/categorical/sparse variant from the loss is compile's job). Classes are
    instantiated, instances are returned as they are, dicts are deserialized, and other callables
    ``fn(y_true, y_pred)`` are wrapped in a :class:`MeanMetricWrapper` named after the function.

    Example:
        >>> get("mse").name
        'mean_squared_error'
        >>> def abs_error(y_true, y_pred):
        ...     return abs(y_true - y_pred)
        >>> get(abs_error).name
        'abs_error'
    """
    if identifier is None:
        return None
    obj = deserialize(identifier) if isinstance(identifier, dict | str) else identifier
    if inspect.isclass(obj) and issubclass(obj, Metric):
        return obj()
    if isinstance(obj, Metric):
        return obj
    if callable(obj):
        return MeanMetricWrapper(obj, name=object_name(obj))
    raise ValueError(
        f"Could not interpret metric identifier: {identifier!r}. Pass a name such as 'accuracy', "
        "a Metric instance or class, or a function(y_true, y_pred)."
    )
