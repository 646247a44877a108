"""Read Keras HDF5 weight files into a tapefit model, layer by layer, in Keras layout.

Two layouts exist: Keras 3's ``.weights.h5``, read by ``tapefit.saving.keras_format``, and the
legacy Keras 2 layout that the published ImageNet files use (``layer_names`` and
``weight_names`` attributes, one group per layer name), read here. Every array is checked against the
model before any weight changes, so a wrong file leaves the model as it was.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["load_keras_h5"]


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "Loading a Keras .h5 weights file needs the h5py package: pip install h5py"
        ) from None
    return h5py


def _decode(names: Any) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _attr_list(group: Any, name: str) -> list[str]:
    """Keras splits long attribute lists into ``name0``, ``name1``, ... chunks."""
    if name in group.attrs:
        return _decode(group.attrs[name])
    out, i = [], 0
    while f"{name}{i}" in group.attrs:
        out.extend(_decode(group.attrs[f"{name}{i}"]))
        i += 1
    return out


def _weighted_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if layer.weights]


def _legacy_arrays(group: Any, model: Any) -> list[tuple[Any, list[np.ndarray], str]]:
    file_layers = [
        name for name in _attr_list(group, "layer_names") if _attr_list(group[name], "weight_names")
    ]
    ours = _weighted_layers(model)
    by_name = {layer.name: layer for layer in ours}
    if set(file_layers) == set(by_name):
        pairs = [(by_name[name], name) for name in file_layers]
    elif len(file_layers) == len(ours):  # Keras's own rule for legacy files: topological order
        pairs = list(zip(ours, file_layers))
    else:
        missing = sorted(set(by_name) - set(file_layers))
        raise ValueError(
            f"the file has {len(file_layers)} layers with weights and the model {len(ours)}; layers "
            f"missing from the file: {missing[:10]}{' ...' if len(missing) > 10 else ''}"
        )
    out = []
    for layer, name in pairs:
        layer_group = group[name]
        arrays = [np.asarray(layer_group[w]) for w in _attr_list(layer_group, "weight_names")]
        out.append((layer, arrays, name))
    return out


def load_keras_h5(model: Any, filepath: str | os.PathLike) -> None:
    """Load a Keras ``.h5`` or ``.weights.h5`` file (Keras 3 or legacy layout) into ``model``.

    The model must have Keras's structure (same layer classes in the same order for Keras 3
    files; same layer names, or the same order, for legacy files). Models nested inside the
    model are not read.
    """
    filepath = os.fspath(filepath)
    h5py = _h5py()
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"No weights file at {filepath}.")
    try:
        f = h5py.File(filepath, "r")
    except OSError as e:
        raise ValueError(
            f"{filepath} cannot be read as an HDF5 weights file (it is truncated, corrupted or not HDF5; "
            f"nothing was loaded): {e}"
        ) from e
    with f:
        try:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in group.attrs or "layer_names0" in group.attrs:
                staged = _legacy_arrays(group, model)
            elif "layers" in group:
                staged = None  # Keras 3's layout: the checked reader of tapefit.saving reads it
            else:
                raise ValueError("it is neither a Keras 3 .weights.h5 file nor a legacy Keras weights file")
        except OSError as e:  # h5py's error for a damaged block met while reading
            raise ValueError(f"{filepath} is corrupted or truncated (nothing was loaded): {e}") from e
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(
                f"{filepath} does not match model {model.name!r} (nothing was loaded): {e}"
            ) from e
    if staged is None:
        from ..saving.keras_format import load_keras_weights

        load_keras_weights(model, filepath)
        return
    problems = []
    for layer, arrays, where in staged:
        want = [w.shape for w in layer.get_weights()]
        got = [a.shape for a in arrays]
        if want != got:
            problems.append(f"{layer.name!r} (file {where!r}): model {want} vs file {got}")
    if problems:
        raise ValueError(
            f"{filepath} does not match model {model.name!r} (nothing was loaded): weight shapes differ for "
            + "; ".join(problems[:10])
        )
    for layer, arrays, _ in staged:
        layer.set_weights(arrays)
