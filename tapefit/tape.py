"""``GradientTape``: TensorFlow's tape API on torch autograd.

Torch records every operation on tensors that require grad, so the tape does not record
anything itself: it enables grad mode, remembers watched tensors, and turns
``tape.gradient(target, sources)`` into ``torch.autograd.grad`` with TensorFlow's conventions
(None for an unconnected source, nested structures in and out, a non-persistent tape usable
once). Gradients taken while another tape is recording are differentiable (``create_graph``),
which is what nested tapes (gradient penalties, higher-order derivatives) need.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["GradientTape"]

_active: list[GradientTape] = []


def _flatten(struct: Any) -> tuple[list[Any], Any]:
    """Flatten nested lists/tuples/dicts; return the leaves and a function that rebuilds the structure."""
    leaves: list[Any] = []

    def walk(s: Any) -> Any:
        if isinstance(s, (list, tuple)):
            return (type(s), [walk(v) for v in s])
        if isinstance(s, dict):
            return (dict, {k: walk(v) for k, v in s.items()})
        leaves.append(s)
        return len(leaves) - 1

    return leaves, walk(struct)


def _unflatten(spec: Any, values: list[Any]) -> Any:
    if isinstance(spec, int):
        return values[spec]
    kind, inner = spec
    if kind is dict:
        return {k: _unflatten(v, values) for k, v in inner.items()}
    items = [_unflatten(v, values) for v in inner]
    return kind(items) if kind is not tuple and kind is not list else kind(items)


class GradientTape:
    """Compute gradients of a computation run inside ``with GradientTape() as tape:``.

    Example:
        >>> import torch, tapefit
        >>> w = torch.nn.Parameter(torch.tensor(3.0))
        >>> with tapefit.GradientTape() as tape:
        ...     y = w * w
        >>> tape.gradient(y, w)
        tensor(6.)
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True):
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        self._watched: dict[int, torch.Tensor] = {}
        self._used = False
        self._recording = False
        self._grad_mode: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> GradientTape:
        self._grad_mode = torch.enable_grad()
        self._grad_mode.__enter__()
        self._recording = True
        _active.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._recording = False
        if self in _active:
            _active.remove(self)
        assert self._grad_mode is not None
        self._grad_mode.__exit__(*exc)

    def watch(self, tensor: Any) -> None:
        """Track ``tensor`` (or a structure of tensors) so gradients with respect to it can be taken."""
        for t in _flatten(tensor)[0]:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"GradientTape.watch expects tensors, got {type(t).__name__}")
            if not t.is_floating_point() and not t.is_complex():
                raise TypeError(
                    f"GradientTape.watch: cannot differentiate with respect to a {t.dtype} tensor; "
                    "cast it to a float type first."
                )
            if not t.requires_grad:
                t.requires_grad_(True)
            self._watched[id(t)] = t

    def watched_variables(self) -> list[torch.Tensor]:
        return list(self._watched.values())

    @contextlib.contextmanager
    def stop_recording(self) -> Iterator[None]:
        """Run the block without recording it (no gradients flow through what it computes)."""
        with torch.no_grad():
            yield

    def reset(self) -> None:
        self._watched.clear()
        self._used = False

    def _check_usable(self) -> None:
        if self._used and not self.persistent:
            raise RuntimeError(
                "A non-persistent GradientTape can only compute gradients once. Create it with "
                "GradientTape(persistent=True) to call gradient() or jacobian() several times."
            )
        self._used = True

    def _create_graph(self) -> bool:
        return any(t._recording for t in _active if t is not self) or (self._recording and self.persistent)

    def gradient(
        self, target: Any, sources: Any, output_gradients: Any = None, unconnected_gradients: str = "none"
    ) -> Any:
        """d(target)/d(sources) with the structure of ``sources``; None where unconnected.

        A non-scalar target (or a list of targets) is summed first, as in TensorFlow.
        """
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(f"unconnected_gradients must be 'none' or 'zero', got {unconnected_gradients!r}")
        self._check_usable()
        if (  # the common step: a scalar loss against a list of trainable weights
            type(sources) is list
            and output_gradients is None
            and unconnected_gradients == "none"
            and self.watch_accessed_variables
            and isinstance(target, torch.Tensor)
            and target.requires_grad
            and target.dim() == 0
            and all(isinstance(s, torch.Tensor) and s.requires_grad for s in sources)
        ):
            create = self._create_graph()
            return list(
                torch.autograd.grad(
                    target,
                    sources,
                    retain_graph=self.persistent or create,
                    create_graph=create,
                    allow_unused=True,
                )
            )
        targets = [t for t in _flatten(target)[0] if t is not None]
        flat, spec = _flatten(sources)
        for s in flat:
            if not isinstance(s, torch.Tensor):
                raise TypeError(f"GradientTape.gradient: sources must be tensors, got {type(s).__name__}")
        grads: list[torch.Tensor | None] = [None] * len(flat)
        live = [
            i
            for i, s in enumerate(flat)
            if s.requires_grad and (self.watch_accessed_variables or id(s) in self._watched)
        ]
        outs = [t for t in targets if isinstance(t, torch.Tensor) and t.requires_grad]
        if live and outs:
            if output_gradients is None:
                grad_outputs = [torch.ones_like(t) for t in outs]
            else:
                grad_outputs = [g for g in _flatten(output_gradients)[0]]
            create = self._create_graph()
            found = torch.autograd.grad(
                outs,
                [flat[i] for i in live],
                grad_outputs=grad_outputs,
                retain_graph=self.persistent or create,
                create_graph=create,
                allow_unused=True,
            )
            for i, g in zip(live, found):
                grads[i] = g
        if unconnected_gradients == "zero":
            grads = [torch.zeros_like(s) if g is None else g for s, g in zip(flat, grads)]
        return _unflatten(spec, grads)

    def jacobian(self, target: torch.Tensor, sources: Any, unconnected_gradients: str = "none") -> Any:
        """Full Jacobian: for each source, a tensor of shape ``target.shape + source.shape``."""
        self._check_usable()
        flat, spec = _flatten(sources)
        n = target.numel()
        create = self._create_graph()
        live = [i for i, s in enumerate(flat) if s.requires_grad]
        jac: list[torch.Tensor | None] = [None] * len(flat)
        if live and target.requires_grad:
            eye = torch.eye(n, dtype=target.dtype, device=target.device).reshape(n, *target.shape)
            found = torch.autograd.grad(
                [target],
                [flat[i] for i in live],
                grad_outputs=[eye],
                retain_graph=True,
                create_graph=create,
                allow_unused=True,
                is_grads_batched=True,
            )
            for i, g in zip(live, found):
                if g is not None:
                    jac[i] = g.reshape(*target.shape, *flat[i].shape)
        if unconnected_gradients == "zero":
            jac = [
                torch.zeros(*target.shape, *s.shape, dtype=s.dtype, device=s.device) if j is None else j
                for s, j in zip(flat, jac)
            ]
        return _unflatten(spec, jac)
