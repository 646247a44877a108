"""``copy.deepcopy`` of a model: an independent twin that trains on, with what tapefit keeps on
its weights (``path``, ``constraint``) and its optimizer's state following the copied weights."""

from __future__ import annotations

import copy

import numpy as np
import torch

import tapefit


def _fitted():
    torch.manual_seed(0)
    model = tapefit.Sequential(
        [
            tapefit.Input((6,)),
            tapefit.layers.Dense(8, activation="relu", kernel_constraint=tapefit.constraints.NonNeg()),
            tapefit.layers.Dense(3),
        ]
    )
    optimizer = tapefit.optimizers.AdamW(0.05, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 6)).astype(np.float32), rng.integers(0, 3, 40)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return model, x, y


def test_a_copy_trains_exactly_like_the_original_and_leaves_it_alone():
    model, x, y = _fitted()
    twin = copy.deepcopy(model)
    before = model.get_weights()
    twin.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # same optimizer state, same updates


def test_a_copy_keeps_weight_paths_constraints_and_weight_decay_exclusions():
    model, _, _ = _fitted()
    twin = copy.deepcopy(model)
    kernel = twin.layers[0].kernel
    assert kernel is not model.layers[0].kernel
    assert kernel.path == model.layers[0].kernel.path == f"{model.layers[0].name}/kernel"
    assert isinstance(kernel.constraint, tapefit.constraints.NonNeg)
    opt = twin.optimizer
    assert opt._index == {id(v): i for i, v in enumerate(twin.trainable_variables)}
    excluded = [v.path for v in twin.trainable_variables if id(v) in opt._exclude_ids]
    assert excluded == [v.path for v in model.trainable_variables if id(v) in model.optimizer._exclude_ids]
    assert opt.iterations is not model.optimizer.iterations and int(opt.iterations) == 5
    with torch.no_grad():
        kernel.fill_(-1.0)
    opt.apply([torch.zeros_like(v) for v in twin.trainable_variables], twin.trainable_variables)
    assert float(kernel.detach().min()) == 0.0  # NonNeg applied by the copied optimizer to the copied kernel
