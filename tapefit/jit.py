"""``tapefit.function``: compile a step with ``torch.compile`` where it pays, else run eagerly.

"auto" compiles on CUDA (where fusing kernels and cutting launches pays) and runs eagerly on
CPU, where compilation costs more than it saves for the small steps of the seeds. Results are
the same either way; state mutated inside (metrics, optimizers) keeps working because compiled
code mutates the same tensors.

A compiled step runs its first call eagerly: that call builds what is built lazily (optimizer
slots, the compiled loss and metrics, layers' weights), so the graph is traced once, over
built state, instead of once before and again after the build.
"""

from __future__ import annotations

import functools
import types
import weakref
from collections.abc import Callable
from typing import Any

import torch

from . import config

__all__ = ["function"]

# True while dynamo traces (a constant in the graph); a third of ``is_compiling``'s cost in eager.
_tracing = torch.compiler.is_dynamo_compiling


def _should_compile(jit_compile: bool | str) -> bool:
    if jit_compile == "auto":
        return config.get_device().type == "cuda"
    if not isinstance(jit_compile, bool):
        raise ValueError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}")
    return jit_compile


def _with_own_code(fn: Callable) -> Callable:
    """``fn`` (a function or bound method) running a private copy of its code object.

    torch.compile keeps compiled graphs, and counts recompilations against its limit, per code
    object. ``Trainer.train_step`` is one code object for every model, so each new model would
    recompile the others' entry and, after eight models, fall back to eager. A copy per step
    function gives each its own cache.
    """
    if isinstance(fn, types.MethodType):
        return types.MethodType(_with_own_code(fn.__func__), fn.__self__)
    if not isinstance(fn, types.FunctionType):
        return fn  # a callable object or builtin: compiled as it is
    code = fn.__code__.replace()  # an equal but distinct code object
    copy = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__ = fn.__qualname__
    copy.__dict__.update(fn.__dict__)
    return copy


def _compile_step(fn: Callable, **torch_compile_kwargs: Any) -> Callable:
    """``fn`` compiled with its own compile cache, its first call run eagerly (see the module doc)."""
    compiled = torch.compile(_with_own_code(fn), **torch_compile_kwargs)
    state = {"built": False}

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if state["built"]:
            return compiled(*args, **kwargs)
        out = fn(*args, **kwargs)
        state["built"] = True
        return out

    return run


_compiled_methods: weakref.WeakKeyDictionary[Any, dict[str, tuple[Callable, Callable]]] = (
    weakref.WeakKeyDictionary()
)


def _compiled_method(owner: Any, name: str, **torch_compile_kwargs: Any) -> Callable:
    """``owner.<name>`` compiled by :func:`_compile_step`, once per owner and method.

    The compiled function takes ``owner`` as an argument rather than binding it, so the cache
    (keyed weakly on ``owner``) does not keep the owner alive, and a copy of the owner never
    runs the original's step.
    """
    bound = getattr(owner, name)
    func = getattr(bound, "__func__", None)
    if getattr(bound, "__self__", None) is not owner or func is None:
        return _compile_step(bound, **torch_compile_kwargs)  # an instance attribute: not cached
    per_owner = _compiled_methods.setdefault(owner, {})
    cached = per_owner.get(name)
    if cached is None or cached[0] is not func:
        cached = per_owner[name] = (func, _compile_step(func, **torch_compile_kwargs))
    return functools.partial(cached[1], owner)


def _forget_compiled(owner: Any) -> None:
    """Drop ``owner``'s compiled methods (its compile options changed)."""
    _compiled_methods.pop(owner, None)


def function(
    fn: Callable | None = None,
    *,
    jit_compile: bool | str = "auto",
    reduce_retracing: bool = False,
    **torch_compile_kwargs: Any,
) -> Any:
    """Decorator that compiles ``fn`` with ``torch.compile`` when ``jit_compile`` says so.

    Usable bare (``@tapefit.function``) or with options (``@tapefit.function(jit_compile=True)``).
    ``reduce_retracing=True`` asks torch.compile for dynamic shapes.

    Example:
        >>> import torch, tapefit
        >>> @tapefit.function
        ... def double(x):
        ...     return 2 * x
        >>> double(torch.ones(2))
        tensor([2., 2.])
    """

    def wrap(f: Callable) -> Callable:
        compiled: list[Callable | None] = [None]

        @functools.wraps(f)
        def run(*args: Any, **kwargs: Any) -> Any:
            if not _should_compile(jit_compile):
                return f(*args, **kwargs)
            if compiled[0] is None:
                opts = dict(torch_compile_kwargs)
                if reduce_retracing:
                    opts.setdefault("dynamic", True)
                compiled[0] = _compile_step(f, **opts)
            return compiled[0](*args, **kwargs)

        run.python_function = f  # type: ignore[attr-defined]
        return run

    return wrap(fn) if fn is not None else wrap
