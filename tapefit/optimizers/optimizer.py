"""``Optimizer``: the base every tapefit optimizer shares, with Keras 3's semantics on torch.

Owns the learning rate (a float held in a device Variable, a schedule, or a callable), the
``iterations`` counter, ``None``-gradient filtering, clipping, decoupled weight decay,
gradient accumulation, the moving average of weights (EMA), per-variable state created
lazily on the variables' devices, and flat ``state_dict`` I/O. A subclass declares its
per-variable state (``_slot_specs``) and updates one group of same-device, same-dtype
variables with ``torch._foreach_*`` kernels (``_update_group``). Grouping and weight-decay
exclusion live in ``_grouping``, accumulation and EMA in ``_accumulation``, state I/O and
config in ``_state``.

Nothing here reads a tensor on the host during a step: the step count, the learning rate and
bias corrections stay tensors, so ``apply`` is sync-free and traceable by ``torch.compile``.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .. import config
from .._naming import to_snake_case, unique_name
from ..distribute.environment import is_distributed
from ..distribute.reduction import all_reduce_gradients
from ..variables import Variable
from . import schedules
from ._accumulation import AccumulationMixin
from ._grouping import Group, GroupingMixin, clip_by_norm, clip_by_value, describe, global_norm_scale, on
from ._state import StateIOMixin


def _takes_step(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    return any(p.kind in kinds for p in params)


class Optimizer(GroupingMixin, AccumulationMixin, StateIOMixin):
    """Base class of tapefit optimizers (Keras 3's ``keras.optimizers.Optimizer``).

    Args:
        learning_rate: A float, a ``schedules.LearningRateSchedule``, or a callable returning the
            rate (called with ``optimizer.iterations`` if it takes an argument, else with none).
        weight_decay: If set, every step first does ``p -= p * weight_decay * learning_rate``
            (decoupled from the gradient), except for variables excluded with
            :meth:`exclude_from_weight_decay`.
        clipnorm: Clip each gradient so that its L2 norm is at most this value.
        clipvalue: Clip each gradient element to ``[-clipvalue, clipvalue]``.
        global_clipnorm: Clip all gradients together so that their global norm is at most this.
        use_ema: Keep an exponential moving average of the variables.
        ema_momentum: ``average = ema_momentum * average + (1 - ema_momentum) * variable``.
        ema_overwrite_frequency: Every this many steps, copy the averages into the variables.
        loss_scale_factor: Multiply the loss by this in :meth:`scale_loss`, divide gradients by it.
        gradient_accumulation_steps: Update every this many calls with the mean of the gradients
            received since the last update; ``iterations`` then counts updates.
        name: The optimizer's name (default: the class name in snake case, made unique).
    """

    def __init__(
        self,
        learning_rate: Any,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=2)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if gradient_accumulation_steps and (
            not isinstance(gradient_accumulation_steps, int) or gradient_accumulation_steps < 2
        ):
            raise ValueError(
                "`gradient_accumulation_steps` must be an integer >= 2. Received: "
                f"gradient_accumulation_steps={gradient_accumulation_steps}"
            )
        if use_ema and not 0 <= ema_momentum <= 1:
            raise ValueError(
                f"`ema_momentum` must be in the range [0, 1]. Received: ema_momentum={ema_momentum}"
            )
        if (
            use_ema
            and ema_overwrite_frequency
            and (not isinstance(ema_overwrite_frequency, int) or ema_overwrite_frequency < 1)
        ):
            raise ValueError(
                "`ema_overwrite_frequency` must be an integer >= 1 or None. Received: "
                f"ema_overwrite_frequency={ema_overwrite_frequency}"
            )
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.name = name or unique_name(to_snake_case(self.__class__.__name__))
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.built = False
        self._iterations = Variable(0, dtype=torch.int64, name="iteration")
        self._learning_rate: Any = None
        self._lr_takes_step = False
        self._set_learning_rate(learning_rate)
        self._trainable_variables: list[torch.Tensor] = []
        self._index: dict[int, int] = {}
        self._slots: dict[str, list[torch.Tensor]] = {}
        self._global_state: dict[str, torch.Tensor] = {}
        self._constraints: dict[int, Callable] = {}
        self._group_cache: dict[tuple[int, ...], list[Group]] = {}
        self._exclude_vars: list[torch.Tensor] = []
        self._exclude_ids: set[int] = set()
        self._exclude_pattern: re.Pattern | None = None
        self._warned_missing: set[int] = set()
        self._warned_unnamed = False
        self._pending_state: dict[str, Any] | None = None
        # Calls since the last accumulated update, tracked in Python so that eager steps branch
        # without reading `iterations` from the device; None means "re-read it once".
        self._phase: int | None = 0

    # ----- learning rate and counters -------------------------------------------------------

    def _set_learning_rate(self, value: Any) -> None:
        if isinstance(value, schedules.LearningRateSchedule) or (
            callable(value) and not isinstance(value, torch.Tensor)
        ):
            self._learning_rate = value
            self._lr_takes_step = isinstance(value, schedules.LearningRateSchedule) or _takes_step(value)
            return
        if (
            isinstance(value, bool)
            or (isinstance(value, torch.Tensor) and value.numel() != 1)
            or (not isinstance(value, (int, float, torch.Tensor)) and not hasattr(value, "__float__"))
        ):
            raise ValueError(
                "Argument `learning_rate` should be float, or an instance of LearningRateSchedule, "
                "or a callable (that takes in the current iteration value and returns the "
                f"corresponding learning rate value). Received instead: learning_rate={value}"
            )
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its "
                "`learning_rate` constructor argument, hence its learning rate is not settable. "
                "If you need the learning rate to be settable, you should instantiate the "
                "optimizer with a float `learning_rate` argument."
            )
        if isinstance(self._learning_rate, Variable):
            self._learning_rate.assign(value)
            return
        dtype = getattr(torch, config.floatx())
        value = value.detach() if isinstance(value, torch.Tensor) else float(value)
        device = self._iterations.device
        self._learning_rate = Variable(value, dtype=dtype, name="learning_rate", device=device)

    def _current_learning_rate(self) -> torch.Tensor | float:
        lr = self._learning_rate
        if isinstance(lr, Variable):
            return lr
        # Under accumulation a schedule sees the updates made, not the calls, so that accumulating
        # K batches of B gives the update of one batch of K*B (Keras passes the call count).
        return lr(self.iterations) if self._lr_takes_step else lr()

    @property
    def learning_rate(self) -> torch.Tensor:
        """The current learning rate as a 0-d tensor; assign a float to change it."""
        value = self._current_learning_rate()
        return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float32)

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self._set_learning_rate(value)

    @property
    def iterations(self) -> torch.Tensor:
        """Steps applied so far (an int64 ``Variable``); with gradient accumulation, updates made."""
        if self.gradient_accumulation_steps:
            return torch.div(self._iterations, self.gradient_accumulation_steps, rounding_mode="floor")
        return self._iterations

    @property
    def variables(self) -> list[torch.Tensor]:
        """Every state tensor: the counter, the learning rate, then the per-variable state."""
        out: list[torch.Tensor] = [self._iterations]
        if isinstance(self._learning_rate, Variable):
            out.append(self._learning_rate)
        base = [n for n in ("average", "gradient_accumulator") if n in self._slots]
        for name in base:
            out.extend(self._slots[name])
        own = [n for n in self._slots if n not in base]
        for i in range(len(self._trainable_variables)):
            out.extend(self._slots[n][i] for n in own)
        return out + list(self._global_state.values())

    # ----- building --------------------------------------------------------------------------

    def _slot_specs(self) -> list[tuple[str, float]]:
        """(name, initial value) of each state tensor a variable gets; names follow Keras."""
        return []

    def _build_global_state(self, var_list: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {}

    @torch.compiler.disable
    def build(self, var_list: Iterable[torch.Tensor]) -> None:
        """Create the state of each variable, on its device and in its dtype (done by the first apply)."""
        if self.built:
            return
        var_list = list(var_list)
        for v in var_list:
            if not isinstance(v, torch.Tensor):
                raise TypeError(
                    f"Optimizer variables must be torch tensors (e.g. nn.Parameter); got {type(v)}."
                )
        if len({id(v) for v in var_list}) != len(var_list):
            raise ValueError(
                "The variable list passed to the optimizer holds the same variable twice; "
                "pass each variable once (e.g. `model.trainable_variables`)."
            )
        devices = {v.device for v in var_list}
        if len(devices) == 1:
            device = devices.pop()
            for scalar in (self._iterations, self._learning_rate):
                if isinstance(scalar, Variable) and scalar.device != device:
                    scalar.data = scalar.data.to(device)
        self._trainable_variables = var_list
        self._index = {id(v): i for i, v in enumerate(var_list)}
        specs = (
            ([("average", 0.0)] if self.use_ema else [])
            + ([("gradient_accumulator", 0.0)] if self.gradient_accumulation_steps else [])
            + self._slot_specs()
        )
        with torch.no_grad():
            self._slots = {
                name: [torch.full_like(v, init).detach() for v in var_list] for name, init in specs
            }
            self._global_state = self._build_global_state(var_list)
        self._constraints = {
            i: c for i, v in enumerate(var_list) if callable(c := getattr(v, "constraint", None))
        }
        self._reset_groups()
        self.built = True
        if self._pending_state is not None:
            pending, self._pending_state = self._pending_state, None
            self.load_state_dict(pending)

    # ----- applying gradients ------------------------------------------------------------------

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, torch.Tensor]]) -> torch.Tensor:
        """Apply ``(gradient, variable)`` pairs, e.g. ``zip(grads, model.trainable_variables)``.

        Returns ``iterations`` (as tf.keras did).

        Example:
            >>> import torch, tapefit
            >>> w = torch.nn.Parameter(torch.ones(2))
            >>> opt = tapefit.optimizers.SGD(learning_rate=0.1)
            >>> _ = opt.apply_gradients([(torch.ones(2), w)])
            >>> w.tolist(), int(opt.iterations)
            ([0.8999999761581421, 0.8999999761581421], 1)
        """
        pairs = list(grads_and_vars)
        if not pairs:
            return self._iterations
        grads, variables = zip(*pairs)
        self.apply(list(grads), list(variables))
        return self._iterations

    @torch.no_grad()
    def apply(self, grads: Iterable[Any], trainable_variables: Iterable[torch.Tensor] | None = None) -> None:
        """Update variables with their gradients (``None`` gradients are skipped with a warning).

        Without ``trainable_variables`` the gradients must match, one to one, the variables the
        optimizer was built with.
        """
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer must already be built "
                    "on a list of variables. Call `optimizer.build(trainable_variables)` first."
                )
            if len(grads) != len(self._trainable_variables):
                raise ValueError(
                    f"Received {len(grads)} gradients, but the optimizer is tracking "
                    f"{len(self._trainable_variables)} trainable variables."
                )
            variables, indices = self._trainable_variables, list(range(len(grads)))
        else:
            variables = list(trainable_variables)
            if len(variables) != len(grads):
                raise ValueError(f"Received {len(grads)} gradients for {len(variables)} variables.")
            if not self.built:
                self.build(variables)
            indices = self._indices_of(variables)
        present = [k for k, g in enumerate(grads) if g is not None]
        if len(present) < len(grads):
            self._report_missing([variables[k] for k, g in enumerate(grads) if g is None], bool(present))
        idx = tuple(indices[k] for k in present)
        gs = [self._prepare_gradient(grads[k], variables[k]) for k in present]
        if is_distributed():  # checked first so that a compiled single-process step has no graph break
            gs = all_reduce_gradients(gs)  # averages over data-parallel ranks
        if self.loss_scale_factor is not None:
            gs = torch._foreach_div(gs, self.loss_scale_factor)
        if self.gradient_accumulation_steps:
            self._accumulate(idx, gs)
        else:
            self._update(idx, gs)
        if self.use_ema:
            self._update_moving_average()
        for i in idx:
            constraint = self._constraints.get(i)
            if constraint is not None:
                v = self._trainable_variables[i]
                v.copy_(constraint(v))
        self._iterations.add_(1)

    def minimize(self, loss: Any, var_list: Any, tape: Any = None) -> torch.Tensor:
        """Compute the gradients of ``loss`` (a tensor, or a callable returning one) and apply them.

        With a ``tape`` (``tapefit.GradientTape``) its ``gradient`` is used; otherwise
        ``torch.autograd.grad``. Returns ``iterations``.
        """
        var_list = list(var_list() if callable(var_list) else var_list)
        if tape is not None:
            if callable(loss):
                with tape:
                    loss = loss()
            grads = list(tape.gradient(loss, var_list))
        else:
            if callable(loss):
                with torch.enable_grad():
                    loss = loss()
            wanted = [v for v in var_list if v.requires_grad]
            found = iter(torch.autograd.grad(loss, wanted, allow_unused=True) if wanted else ())
            grads = [next(found) if v.requires_grad else None for v in var_list]
        return self.apply_gradients(zip(grads, var_list))

    def _indices_of(self, variables: list[torch.Tensor]) -> list[int]:
        try:
            return [self._index[id(v)] for v in variables]
        except KeyError:
            unknown = next(v for v in variables if id(v) not in self._index)
            raise ValueError(
                f"Unknown variable: {describe(unknown)}. This optimizer can only be called for the "
                "variables it was originally built with. When working with a new set of variables, "
                "you should recreate a new optimizer instance."
            ) from None

    def _report_missing(self, missing: list[torch.Tensor], any_present: bool) -> None:
        if not any_present:
            raise ValueError(
                "No gradients provided for any variable. Check that the loss depends on the "
                f"variables passed ({len(missing)} of them, e.g. {describe(missing[0])}) and that "
                "it was computed with gradient tracking on (inside the tape, not under no_grad)."
            )
        new = [v for v in missing if id(v) not in self._warned_missing]
        if new:
            self._warned_missing.update(id(v) for v in new)
            warnings.warn(
                f"Gradients do not exist for variables {[describe(v) for v in new]} when minimizing "
                "the loss. If using `model.compile()`, did you forget to provide a `loss` argument?",
                stacklevel=4,
            )

    @staticmethod
    def _prepare_gradient(grad: Any, variable: torch.Tensor) -> torch.Tensor:
        if not isinstance(grad, torch.Tensor):
            grad = torch.as_tensor(grad)
        if grad.layout != torch.strided:
            grad = grad.to_dense()
        if grad.shape != variable.shape:
            raise ValueError(f"Gradient of shape {tuple(grad.shape)} does not match {describe(variable)}.")
        if grad.dtype != variable.dtype or grad.device != variable.device:
            grad = grad.to(device=variable.device, dtype=variable.dtype)
        return grad

    def _clip(self, grad_lists: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
        if self.clipnorm and self.clipnorm > 0:
            return [clip_by_norm(gs, self.clipnorm) for gs in grad_lists]
        if self.global_clipnorm and self.global_clipnorm > 0:
            scale = global_norm_scale(grad_lists, self.global_clipnorm)
            return [torch._foreach_mul(gs, on(scale, gs[0].device, gs[0].dtype)) for gs in grad_lists]
        if self.clipvalue and self.clipvalue > 0:
            return [clip_by_value(gs, self.clipvalue) for gs in grad_lists]
        return grad_lists

    def _update(self, idx: tuple[int, ...], grads: list[torch.Tensor]) -> None:
        """Clip, decay and update: one Keras ``update_step`` over the variables in ``idx``."""
        groups = self._groups(idx)
        grad_lists = self._clip([[grads[p] for p in g.positions] for g in groups])
        lr = self._current_learning_rate()
        if self.weight_decay is not None:
            factor = 1 - self.weight_decay * lr
            for g in groups:
                if g.decay_params:
                    torch._foreach_mul_(g.decay_params, on(factor, g.device))
        step = self.iterations
        shared = self._begin_update(step)
        for g, gs in zip(groups, grad_lists):
            self._update_group(g, gs, on(lr, g.device, g.dtype), on(step, g.device), shared)

    def _begin_update(self, step: torch.Tensor) -> Any:
        """Once per update, before the groups: state shared by all variables (Nadam's product)."""
        return None

    def _update_group(
        self,
        group: Group,
        grads: list[torch.Tensor],
        lr: torch.Tensor | float,
        step: torch.Tensor,
        shared: Any,
    ) -> None:
        """Update ``group.params`` in place; ``step`` counts updates made before this one."""
        raise NotImplementedError(f"{type(self).__name__} must implement `_update_group`.")

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Multiply the loss by ``loss_scale_factor`` (if set) before computing gradients."""
        return loss * self.loss_scale_factor if self.loss_scale_factor is not None else loss

    def __getstate__(self) -> dict[str, Any]:
        """The state to pickle or deep-copy, without what is keyed by ``id()`` (rebuilt on load)."""
        state = dict(self.__dict__)
        for key in ("_index", "_exclude_ids", "_group_cache", "_warned_missing"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled or copied optimizer: its state follows the variables it was copied with
        (``copy.deepcopy(model)`` and pickling a model copy its optimizer along)."""
        self.__dict__.update(state)
        self._index = {id(v): i for i, v in enumerate(self._trainable_variables)}
        self._exclude_ids = {id(v) for v in self._exclude_vars}
        self._warned_missing = set()
        self._reset_groups()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"
