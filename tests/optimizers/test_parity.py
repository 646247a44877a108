"""Every optimizer and option against Keras 3 (torch backend): same variables, same gradients."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
import torch

import tapefit.optimizers as tf_opt

keras = pytest.importorskip("keras")

SHAPES = [(3, 4), (5,), (2, 2, 2)]


def _data(steps: int, seed: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    inits = [rng.normal(size=s).astype("float32") for s in SHAPES]
    # The last variable's gradients are tiny so that each optimizer's epsilon placement matters.
    scales = [1.0, 3.0, 1e-5]
    grads = [
        [(c * rng.normal(size=s)).astype("float32") for s, c in zip(SHAPES, scales)] for _ in range(steps)
    ]
    return inits, grads


def _schedule(module, spec):
    if isinstance(spec, tuple):
        name, kwargs = spec
        return getattr(module.optimizers.schedules if module is keras else module.schedules, name)(**kwargs)
    return spec


def _run(module, name, kwargs, inits, grads, exclude=None):
    kwargs = {k: _schedule(module, v) for k, v in kwargs.items()}
    opt = getattr(module.optimizers if module is keras else module, name)(**kwargs)
    if module is keras:
        variables = [keras.Variable(x) for x in inits]
    else:
        variables = [torch.nn.Parameter(torch.tensor(x)) for x in inits]
    if exclude is not None:
        opt.exclude_from_weight_decay(var_list=[variables[i] for i in exclude])
    for step in grads:
        opt.apply_gradients(zip([torch.tensor(g) for g in step], variables))
    values = [
        np.asarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v.numpy()) for v in variables
    ]
    return values, int(opt.iterations)


CASES = {
    "sgd": ("SGD", {"learning_rate": 0.1}),
    "sgd_momentum": ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    "sgd_nesterov": ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    "adam": ("Adam", {"learning_rate": 0.01}),
    "adam_amsgrad": ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
    "adamw": ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1}),
    "adamax": ("Adamax", {"learning_rate": 0.01}),
    "nadam": ("Nadam", {"learning_rate": 0.01}),
    "rmsprop": ("RMSprop", {"learning_rate": 0.01}),
    "rmsprop_momentum": ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5}),
    "rmsprop_centered_momentum": ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    "adagrad": ("Adagrad", {"learning_rate": 0.1}),
    "adadelta": ("Adadelta", {"learning_rate": 1.0}),
    "lion": ("Lion", {"learning_rate": 0.01}),
    "sgd_weight_decay": ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.05}),
    "adam_clipnorm": ("Adam", {"learning_rate": 0.01, "clipnorm": 0.5}),
    "rmsprop_clipvalue": ("RMSprop", {"learning_rate": 0.01, "clipvalue": 0.3}),
    "sgd_global_clipnorm": ("SGD", {"learning_rate": 0.1, "global_clipnorm": 1.0}),
    "sgd_exponential_decay": (
        "SGD",
        {
            "learning_rate": (
                "ExponentialDecay",
                {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5},
            ),
            "momentum": 0.9,
        },
    ),
    "adamw_cosine_warmup": (
        "AdamW",
        {
            "learning_rate": (
                "CosineDecay",
                {"initial_learning_rate": 0.0, "decay_steps": 4, "warmup_target": 0.05, "warmup_steps": 2},
            )
        },
    ),
    "adam_loss_scale": ("Adam", {"learning_rate": 0.01, "loss_scale_factor": 4.0}),
    "adam_ema": (
        "Adam",
        {"learning_rate": 0.01, "use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 3},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras(case):
    name, kwargs = CASES[case]
    inits, grads = _data(steps=6)
    expected, k_iters = _run(keras, name, kwargs, inits, grads)
    got, iters = _run(tf_opt, name, kwargs, inits, grads)
    assert iters == k_iters == 6
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)
    assert not np.allclose(got[0], inits[0])


@pytest.mark.parametrize("name", ["Adam", "Nadam", "SGD"])
def test_gradient_accumulation_matches_keras(name):
    kwargs = {"learning_rate": 0.05, "gradient_accumulation_steps": 3, "weight_decay": 0.01}
    if name == "SGD":
        kwargs["momentum"] = 0.9
    inits, grads = _data(steps=8, seed=1)
    expected, k_iters = _run(keras, name, kwargs, inits, grads)
    got, iters = _run(tf_opt, name, kwargs, inits, grads)
    assert iters == k_iters == 2
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_gradient_accumulation_with_a_schedule_is_the_large_batch_update(name):
    """Accumulating K gradients with a schedule gives the update of their mean, step for step.

    Keras hands the schedule the call count, so there its rate decays K times faster under
    accumulation; tapefit deliberately hands it the update count.
    """
    schedule = ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5})
    kwargs = {"learning_rate": schedule, "weight_decay": 0.01}
    if name == "SGD":
        kwargs["momentum"] = 0.9
    inits, grads = _data(steps=9, seed=3)
    means = [[np.mean(g, axis=0) for g in zip(*grads[i : i + 3])] for i in range(0, 9, 3)]
    expected, big_iters = _run(tf_opt, name, kwargs, inits, means)
    got, iters = _run(tf_opt, name, {**kwargs, "gradient_accumulation_steps": 3}, inits, grads)
    assert iters == big_iters == 3
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    keras_style, _ = _run(keras, name, {**kwargs, "gradient_accumulation_steps": 3}, inits, grads)
    assert not np.allclose(keras_style[0], got[0], rtol=1e-4)


def test_weight_decay_exclusion_matches_keras():
    kwargs = {"learning_rate": 0.01, "weight_decay": 0.5}
    inits, grads = _data(steps=4, seed=2)
    expected, _ = _run(keras, "AdamW", kwargs, inits, grads, exclude=[1])
    got, _ = _run(tf_opt, "AdamW", kwargs, inits, grads, exclude=[1])
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)
    decayed_everywhere, _ = _run(tf_opt, "AdamW", kwargs, inits, grads)
    assert not np.allclose(decayed_everywhere[1], got[1])
