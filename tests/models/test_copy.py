"""``copy.deepcopy`` of a model: an independent twin that trains on, with what tapefit keeps on
its weights (``path``, ``constraint``) and its optimizer's state following the copied weights."""

from __future__ import annotations

import copy
import itertools
import pickle

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


class _Subclassed(tapefit.Model):  # at module level, so that pickle finds the class
    def __init__(self):
        super().__init__()
        self.inner = tapefit.layers.Dense(2)

    def call(self, x):
        return self.inner(x) * 2


def test_functional_and_subclassed_models_copy_pickle_and_run():
    inp = tapefit.Input((4,))
    hidden = tapefit.layers.Dense(3, activation="relu")(inp)
    functional = tapefit.Model(inp, [tapefit.layers.Dense(2)(hidden), hidden])

    subclassed = _Subclassed()
    x = torch.rand(5, 4)
    copiers = (copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m)))
    for model, copier in itertools.product((functional, subclassed), copiers):
        expected = model(x)
        twin = copier(model)
        got = twin(x)
        expected = expected if isinstance(expected, list) else [expected]
        got = got if isinstance(got, list) else [got]
        for a, b in zip(expected, got):
            torch.testing.assert_close(a, b)
        assert all(p is not q for p, q in zip(model.parameters(), twin.parameters()))


def test_weights_copied_first_through_the_optimizer_keep_their_attributes():
    model, _, _ = _fitted()
    copied = copy.deepcopy({"optimizer": model.optimizer, "model": model})
    kernel = copied["model"].layers[0].kernel
    assert kernel.path == model.layers[0].kernel.path
    assert isinstance(kernel.constraint, tapefit.constraints.NonNeg)
    assert copied["optimizer"]._trainable_variables[0] is kernel


def test_a_copy_keeps_loss_scaling():
    from tapefit.mixed_precision import LossScaleOptimizer

    model = tapefit.Sequential([tapefit.Input((6,)), tapefit.layers.Dense(3)])
    model.compile(optimizer=LossScaleOptimizer(tapefit.optimizers.SGD(0.1), initial_scale=64.0), loss="mse")
    x, y = np.ones((8, 6), np.float32), np.zeros((8, 3), np.float32)
    model.fit(x, y, verbose=0)
    twin = copy.deepcopy(model)
    opt = twin.optimizer
    assert isinstance(opt, LossScaleOptimizer)
    assert opt._scale is not model.optimizer._scale and float(opt.dynamic_scale) == 64.0
    assert opt.inner_optimizer._index == {id(v): i for i, v in enumerate(twin.trainable_variables)}
    twin.fit(x, y, verbose=0)
    assert int(opt.iterations) == 2 and int(model.optimizer.iterations) == 1


def test_a_pickled_model_trains_on_exactly_like_the_original():
    model, x, y = _fitted()
    model.optimizer.exclude_from_weight_decay(var_list=[model.layers[1].kernel])
    twin = pickle.loads(pickle.dumps(model))
    assert twin.optimizer._exclude_ids == {id(twin.layers[1].kernel)}
    for m in (model, twin):
        m.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(twin.optimizer.iterations) == int(model.optimizer.iterations) == 15
