"""``EinsumDense``: a dense layer of any dimensionality, ``einsum(equation, inputs, kernel) + bias``."""

from __future__ import annotations

import re
from typing import Any

import torch

from .. import activations, constraints, initializers, regularizers
from .layer import Layer

__all__ = ["EinsumDense"]


class EinsumDense(Layer):
    """``activation(einsum(equation, inputs, kernel) + bias)``, as Keras's ``EinsumDense``.

    The equation names the input, kernel and output axes (``"ab,bc->ac"`` is ``Dense``); an
    ellipsis on the left or on the right of the input and output stands for any number of
    axes. The kernel's shape is read from the equation, the input shape and ``output_shape``
    (the output's shape without the batch axis and the ellipsis axes; ``None`` where the input
    gives it). ``bias_axes`` names the output axes that get a bias. Glorot and the other
    variance-scaling initialisers count fans over the kernel's input and output axes, as Keras.

    Example:
        >>> import torch, tapefit
        >>> layer = tapefit.layers.EinsumDense("abc,cde->abde", output_shape=(None, 4, 8), bias_axes="de")
        >>> layer(torch.ones(2, 5, 16)).shape
        torch.Size([2, 5, 4, 8])
        >>> tuple(layer.kernel.shape), tuple(layer.bias.shape)
        ((16, 4, 8), (4, 8))
    """

    def __init__(
        self,
        equation: str,
        output_shape: int | tuple[int | None, ...] | list[int | None],
        activation: Any = None,
        bias_axes: str | None = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        _parse(equation)
        self.equation = equation
        self.partial_output_shape = (output_shape,) if isinstance(output_shape, int) else tuple(output_shape)
        self.bias_axes = bias_axes
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape: Any) -> None:
        kernel_shape, bias_shape, _, input_axes, output_axes = _analyze(
            self.equation, self.bias_axes, tuple(input_shape), self.partial_output_shape, self.name
        )
        init = self.kernel_initializer
        if isinstance(init, initializers.VarianceScaling) and (
            init.input_axes is None or init.output_axes is None
        ):
            init = type(init).from_config(
                {**init.get_config(), "input_axes": input_axes, "output_axes": output_axes}
            )
        self.kernel = self.add_weight(
            tuple(kernel_shape),
            init,
            name="kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = (
            self.add_weight(
                tuple(bias_shape),
                self.bias_initializer,
                name="bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
            if bias_shape is not None
            else None
        )
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        y = torch.einsum(self.equation, inputs, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        if self.activation is not activations.linear:
            y = self.activation(y)
        if self.activity_regularizer is not None:
            self.add_loss(self.activity_regularizer(y) / y.shape[0])
        return y

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        return tuple(
            _analyze(self.equation, self.bias_axes, tuple(input_shape), self.partial_output_shape, self.name)[
                2
            ]
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "output_shape": self.partial_output_shape,
            "equation": self.equation,
            "activation": activations.serialize(self.activation),
            "bias_axes": self.bias_axes,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


_FORMS = (
    (re.compile(r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)"), False),
    (re.compile(r"0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)"), True),
    (re.compile(r"([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0"), False),
)


def _parse(equation: str) -> tuple[str, str, str, bool]:
    """(input, kernel, output, ellipsis on the left) of an ``EinsumDense`` equation."""
    flat = equation.replace(" ", "").replace("...", "0") if isinstance(equation, str) else ""
    for pattern, left in _FORMS:
        match = pattern.fullmatch(flat)
        if match:
            return match.group(1), match.group(2), match.group(3), left
    raise ValueError(
        f"EinsumDense: invalid equation {equation!r}. Use the form 'ab,bc->ac', '...b,bc->...c' "
        "(ellipsis on the left) or 'ab...,bc->ac...' (on the right), letters only."
    )


def _analyze(
    equation: str, bias_axes: str | None, input_shape: tuple, partial_output: tuple, owner: str
) -> tuple[list, list | None, list, list[int], list[int]]:
    """Keras's shapes for an ``EinsumDense``: (kernel, bias or None, full output, the kernel's input
    axes, the kernel's output axes)."""
    in_spec, kernel_spec, out_spec, left = _parse(equation)
    elided = len(input_shape) - len(in_spec)
    output = [input_shape[0], *partial_output]
    if elided > 0 and left:
        output[1:1] = input_shape[1:elided]
    elif elided > 0:
        output.extend(input_shape[len(input_shape) - elided :])
    if left:
        in_pos = {c: i + elided for i, c in enumerate(in_spec)}
        out_pos = {c: i + elided for i, c in enumerate(out_spec)}
    else:
        in_pos = {c: i for i, c in enumerate(in_spec)}
        out_pos = {c: i for i, c in enumerate(out_spec)}
    if len(output) != len(out_spec) + max(elided, 0):
        raise ValueError(
            f"EinsumDense {owner!r}: output_shape {partial_output} does not fit the equation "
            f"{equation!r} for inputs of shape {input_shape}: give one size (or None) per output "
            "axis after the batch axis."
        )
    for c in in_spec:
        if c in out_pos and output[out_pos[c]] is not None and output[out_pos[c]] != input_shape[in_pos[c]]:
            raise ValueError(
                f"EinsumDense {owner!r}: axis {c!r} is {input_shape[in_pos[c]]} in the input but "
                f"{output[out_pos[c]]} in output_shape; a shared axis keeps its size (use None)."
            )
        if c in out_pos:
            output[out_pos[c]] = input_shape[in_pos[c]]
    for c in out_spec:
        if c not in in_spec and c not in kernel_spec:
            raise ValueError(
                f"EinsumDense {owner!r}: output axis {c!r} of {equation!r} is in neither the input "
                "nor the kernel."
            )
    kernel, input_axes, output_axes = [], [], []
    for i, c in enumerate(kernel_spec):
        if c in out_pos:
            kernel.append(output[out_pos[c]])
            output_axes.append(i)
        elif c in in_pos:
            kernel.append(input_shape[in_pos[c]])
            input_axes.append(i)
        else:
            raise ValueError(
                f"EinsumDense {owner!r}: kernel axis {c!r} of {equation!r} is in neither the input "
                "nor the output."
            )
    if any(d is None for d in kernel):
        raise ValueError(
            f"EinsumDense {owner!r}: the kernel's shape {tuple(kernel)} has unknown sizes; give them in "
            "output_shape or in the input's shape."
        )
    bias = None
    if bias_axes is not None:
        unknown = [c for c in bias_axes if c not in out_spec]
        if unknown:
            raise ValueError(
                f"EinsumDense {owner!r}: bias_axes {bias_axes!r} names {unknown[0]!r}, which is not "
                f"an output axis of {equation!r}."
            )
        offset = elided if left else 0
        sizes = {c: output[i + offset] for i, c in enumerate(out_spec)}
        first = min(out_spec.find(c) for c in bias_axes)
        bias = [sizes[c] if c in bias_axes else 1 for c in out_spec[first:]]
        if not left:
            bias.extend([1] * max(elided, 0))
    return kernel, bias, output, input_axes, output_axes
