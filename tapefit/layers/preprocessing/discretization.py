"""``Discretization``: bucket continuous values by boundaries, given or learned by ``adapt``.

``adapt`` runs Keras 3's quantile summary in numpy, operation for operation (float32 summaries,
the same sort, cumulative sums and interpolations), so the learned ``bin_boundaries`` equal
Keras's for the same batches, whatever their size. Like Keras, the layer has no weights: the
boundaries are a plain list in the config, and a device copy is kept as a non-persistent buffer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ... import config
from ..layer import Layer
from .category_encoding import _check_mode, _encode, _refuse_sparse

__all__ = ["Discretization"]

_MODES = ("int", "one_hot", "multi_hot", "count")


# ----------------------------------------------------------------------------- quantile summary
# A summary is a (2, n) float32 array: sorted values on row 0, the weight (count) each stands for
# on row 1.
def _summarize(values: np.ndarray, epsilon: float) -> np.ndarray:
    """About ``1 / epsilon`` evenly spaced order statistics of ``values``, each weighing ``step``."""
    ordered = np.sort(values.reshape(-1))
    step = max(ordered.size / (1.0 / epsilon), 1)
    picked = ordered[int(step - 1) :: int(step)]
    return np.stack([picked, np.ones_like(picked) * step])


def _compress(summary: np.ndarray, epsilon: float) -> np.ndarray:
    """Resample ``summary`` at cumulative-weight fractions ``epsilon, 2 epsilon, ..., 1``."""
    if summary.shape[1] * epsilon < 1:
        return summary
    fractions = epsilon + np.arange(0.0, 1.0, epsilon)
    cumulative = summary[1].cumsum()
    position = cumulative / cumulative[-1]
    values = np.interp(fractions, position, summary[0])
    cumulative = np.interp(fractions, position, cumulative)
    weights = cumulative - np.concatenate((np.array([0]), cumulative[:-1]))
    return np.stack((values, weights)).astype("float32")


def _merge(new: np.ndarray, old: np.ndarray, epsilon: float) -> np.ndarray:
    merged = np.concatenate((new, old), axis=1)
    return _compress(np.take(merged, np.argsort(merged[0]), axis=1), epsilon)


def _first_of(batch: Any) -> Any:
    return batch[0] if isinstance(batch, tuple) else batch


def _as_float32(batch: Any) -> np.ndarray:
    if isinstance(batch, torch.Tensor):
        batch = batch.detach().cpu().numpy()
    array = np.asarray(batch) if not isinstance(batch, dict) else None
    if array is None or array.dtype.kind not in "biuf":
        raise TypeError(
            f"Discretization.adapt() expects batches of numbers, got {type(batch).__name__}"
            f"{'' if array is None else f' of dtype {array.dtype}'}."
        )
    return array.astype("float32")


class Discretization(Layer):
    """Place each value in one of the bins ``(-inf, b0), [b0, b1), ..., [b_last, inf)``.

    Outputs the bin index (``"int"``, int32, same shape as the inputs) or its encoding over
    ``len(bin_boundaries) + 1`` bins (``"one_hot"``, ``"multi_hot"``, ``"count"``, with
    ``CategoryEncoding``'s shape rules, in the layer's compute dtype). Inputs are cast to
    ``floatx()`` first, as Keras does.

    Args:
        bin_boundaries: sorted bin edges; give these, or ``num_bins`` and call ``adapt``.
        num_bins: the number of bins ``adapt`` learns (quantiles of the data).
        epsilon: error tolerance of the quantile summary (smaller: more exact, more memory).
        output_mode: ``"int"`` (default), ``"one_hot"``, ``"multi_hot"`` or ``"count"``.
        sparse: only False; sparse outputs are refused.
        dtype: the dtype policy (the output dtype of the encoded modes).
        name: the layer's name.

    Example:
        >>> import torch
        >>> layer = Discretization(bin_boundaries=[0.0, 1.0, 2.0])
        >>> layer(torch.tensor([[-1.5, 1.0, 3.4, 0.5]]))
        tensor([[0, 2, 3, 1]], dtype=torch.int32)
    """

    def __init__(
        self,
        bin_boundaries: Any = None,
        num_bins: int | None = None,
        epsilon: float = 0.01,
        output_mode: str = "int",
        sparse: bool = False,
        dtype: Any = None,
        name: str | None = None,
    ):
        super().__init__(name=name, dtype=dtype)
        _refuse_sparse("Discretization", sparse)
        _check_mode("Discretization", output_mode, _MODES)
        if num_bins is not None and num_bins < 0:
            raise ValueError(f"Discretization: num_bins must be >= 0, got {num_bins}.")
        if num_bins is not None and bin_boundaries is not None:
            raise ValueError(
                f"Discretization: give num_bins (and call adapt) or bin_boundaries, not both; got "
                f"num_bins={num_bins} and bin_boundaries={bin_boundaries!r}."
            )
        if num_bins is None and bin_boundaries is None:
            raise ValueError("Discretization: give either num_bins (and call adapt) or bin_boundaries.")
        if not 0 < epsilon < 1:
            raise ValueError(f"Discretization: epsilon must be in (0, 1), got {epsilon!r}.")
        self.num_bins = num_bins
        self.epsilon = epsilon
        self.output_mode = output_mode
        self.sparse = False
        self.bin_boundaries = bin_boundaries
        self.reset_state()

    # ------------------------------------------------------------------ boundaries
    @property
    def bin_boundaries(self) -> list[float] | None:
        """The bin edges (a list of floats), or None before ``adapt``."""
        return self._bin_boundaries

    @bin_boundaries.setter
    def bin_boundaries(self, value: Any) -> None:
        if value is None:
            self._bin_boundaries = None
            return
        edges = [float(b) for b in np.asarray(value, dtype="float64").reshape(-1)]
        if any(b > a for a, b in zip(edges[1:], edges)):
            raise ValueError(
                f"Discretization: bin_boundaries must be sorted in increasing order, got {edges}."
            )
        self._bin_boundaries = edges
        t = torch.tensor(edges, dtype=getattr(torch, config.floatx()), device=config.get_device())
        self.register_buffer("_edges", t, persistent=False)

    @property
    def output_dtype(self) -> str:
        return "int32" if self.output_mode == "int" else self.compute_dtype

    # ------------------------------------------------------------------------ call
    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._bin_boundaries is None:
            raise ValueError(
                f"Discretization {self.name!r} has no bin_boundaries: pass bin_boundaries= at construction "
                "or call adapt(data) before using the layer."
            )
        x = torch.as_tensor(inputs).to(getattr(torch, config.floatx()))
        edges = self._edges if self._edges.device == x.device else self._edges.to(x.device)
        indices = torch.bucketize(x, edges.to(x.dtype), right=True).to(torch.int32)
        depth = len(self._bin_boundaries) + 1
        return _encode(indices, self.output_mode, depth, getattr(torch, self.output_dtype))

    # ----------------------------------------------------------------------- adapt
    def adapt(self, data: Any, steps: int | None = None) -> None:
        """Learn ``num_bins`` quantile boundaries from ``data`` with Keras's quantile summary.

        Args:
            data: a numpy array, tensor or (nested) list of numbers (summarised as one array, as
                Keras does), or a ``tapefit.data.Dataset`` or other iterator of batches (each batch
                is summarised on its own and the summaries merged, as in Keras; ``(x, y)``
                elements use ``x``).
            steps: the most batches to read from a dataset or iterable (needed for an infinite
                dataset); not accepted with an array.
        """
        if self.num_bins is None:
            raise ValueError(
                f"Discretization {self.name!r} was created with bin_boundaries, so adapt() has nothing to "
                "learn: create it with num_bins= to adapt it."
            )
        if self.num_bins < 1:
            raise ValueError(
                f"Discretization {self.name!r}: adapt() needs num_bins >= 1, got {self.num_bins}."
            )
        self.reset_state()
        seen = False
        for batch in self._adapt_batches(data, steps):
            values = _as_float32(_first_of(batch))
            if values.size:
                seen = True
            self.update_state(values)
        if not seen:
            raise ValueError(
                f"Discretization {self.name!r}.adapt() received no data: the batches were empty."
            )
        self.finalize_state()

    def _adapt_batches(self, data: Any, steps: int | None) -> Iterable:
        from ...data import Dataset
        from ...data.spec import INFINITE_CARDINALITY

        if isinstance(data, (list, tuple)):
            try:
                data = np.asarray(data)  # as Keras: anything but a dataset is one array
            except ValueError as error:
                raise ValueError(
                    f"Discretization.adapt(): a list is adapted as one array, as in Keras, and this one is "
                    f"ragged ({error}); pass an iterator of batches, e.g. iter(batches), or a Dataset."
                ) from None
        if isinstance(data, (np.ndarray, torch.Tensor)):
            if steps is not None:
                raise ValueError(
                    "Discretization.adapt(): steps= applies to datasets and iterables of batches, not to an "
                    "array; slice the array instead."
                )
            return [data]
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"Discretization.adapt(): steps must be a positive int or None, got {steps!r}.")
        if isinstance(data, Dataset):
            if steps is not None:
                return data.take(steps)
            if data.cardinality() == INFINITE_CARDINALITY:
                raise ValueError(
                    "Discretization.adapt() got an infinite dataset (repeat() without a count): pass steps= "
                    "or dataset.take(n)."
                )
            return data
        if isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
            raise TypeError(
                "Discretization.adapt() expects a numpy array, a tensor, a tapefit.data.Dataset or an "
                f"iterable of batches, got {type(data).__name__}."
            )
        return data if steps is None else (b for _, b in zip(range(steps), data))

    def update_state(self, data: Any) -> None:
        """Merge the quantile summary of one batch into the running summary."""
        summary = _summarize(_as_float32(data), self.epsilon)
        self.summary = _merge(summary, self.summary, self.epsilon)

    def finalize_state(self) -> None:
        """Set ``bin_boundaries`` from the running summary."""
        if self.num_bins is not None:
            self.bin_boundaries = _compress(self.summary, 1.0 / self.num_bins)[0, :-1].tolist()

    def reset_state(self) -> None:
        """Forget the running summary (``adapt`` starts with this)."""
        self.summary = None if self.num_bins is None else np.array([[], []], dtype="float32")

    # ---------------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        return {
            "bin_boundaries": self.bin_boundaries,
            "num_bins": self.num_bins,
            "epsilon": self.epsilon,
            "output_mode": self.output_mode,
            "sparse": self.sparse,
            "name": self.name,
            "dtype": self._dtype_name or self.dtype,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Discretization:
        """Rebuild the layer, adapted boundaries included (an adapted config has both keys)."""
        config = dict(config)
        bin_boundaries = config.pop("bin_boundaries", None)
        if config.get("num_bins") is None:
            return cls(bin_boundaries=bin_boundaries, **config)
        layer = cls(**config)
        layer.bin_boundaries = bin_boundaries
        return layer
