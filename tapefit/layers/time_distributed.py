"""``TimeDistributed``: one layer applied to every timestep of a sequence, with the same weights."""

from __future__ import annotations

from typing import Any

import torch

from .layer import Layer
from .normalization import BatchNormalization

__all__ = ["TimeDistributed"]


class TimeDistributed(Layer):
    """Applies ``layer`` to every slice ``inputs[:, t]`` of inputs shaped (batch, timesteps, ...).

    The timesteps are folded into the batch, so the wrapped layer runs once over all of them. A
    layer holding ``BatchNormalization`` is run step by step in training instead, so that its
    statistics are per timestep as in Keras. The input's mask passes through to the output.

    Example:
        >>> import torch, tapefit
        >>> frames = torch.ones(2, 5, 8, 8, 3)
        >>> tapefit.layers.TimeDistributed(tapefit.layers.Conv2D(4, 3))(frames).shape
        torch.Size([2, 5, 6, 6, 4])
    """

    def __init__(self, layer: Layer, **kwargs: Any):
        if not isinstance(layer, Layer):
            raise ValueError(f"TimeDistributed wraps a tapefit layer, got {type(layer).__name__}.")
        super().__init__(**kwargs)
        self.layer = layer
        self.supports_masking = True

    def build(self, input_shape: Any = None) -> None:
        if input_shape is None or len(input_shape) < 3:
            raise ValueError(
                f"TimeDistributed {self.name!r} needs inputs of shape (batch, timesteps, ...) with at least "
                f"3 axes, got input shape {input_shape}."
            )
        if not self.layer.built:
            self.layer.build((None, *input_shape[2:]))
            self.layer.built = True
        self.built = True

    def call(
        self, inputs: torch.Tensor, training: bool = False, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if inputs.dim() < 3:
            raise ValueError(
                f"TimeDistributed {self.name!r} needs inputs of shape (batch, timesteps, ...), got shape "
                f"{tuple(inputs.shape)}."
            )
        batch, steps = inputs.shape[:2]
        # The wrapped layer gets its timestep's slice of the mask when its call takes one, as in Keras.
        takes_mask = mask is not None and "mask" in type(self.layer)._call_signature().parameters
        if training and any(isinstance(m, BatchNormalization) for m in self.layer.modules()):
            return torch.stack(
                [
                    self.layer(inputs[:, t], training=True, **({"mask": mask[:, t]} if takes_mask else {}))
                    for t in range(steps)
                ],
                dim=1,
            )
        folded = {"mask": mask.reshape(batch * steps, *mask.shape[2:])} if takes_mask else {}
        outputs = self.layer(inputs.reshape(batch * steps, *inputs.shape[2:]), training=training, **folded)
        return outputs.reshape(batch, steps, *outputs.shape[1:])

    def get_config(self) -> dict[str, Any]:
        from ..saving.serialization import serialize_layer

        return {**super().get_config(), "layer": serialize_layer(self.layer)}

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> TimeDistributed:
        from ..saving.serialization import deserialize_layer

        return cls(**{**config, "layer": deserialize_layer(config["layer"], custom_objects)})
