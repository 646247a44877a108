"""``gradient_accumulation_steps`` in ``fit()``: K batches of B train as one batch of K*B."""

from __future__ import annotations

import numpy as np
import pytest

import tapefit


def _train(batch_size: int, accumulate: int | None, optimizer: str) -> tuple[list[np.ndarray], int]:
    tapefit.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = rng.integers(0, 3, size=96)
    model = tapefit.Sequential(
        [tapefit.Input((6,)), tapefit.layers.Dense(8, activation="relu"), tapefit.layers.Dense(3)]
    )
    schedule = tapefit.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.7)
    extra = {"gradient_accumulation_steps": accumulate} if accumulate else {}
    opt = (
        tapefit.optimizers.SGD(schedule, momentum=0.9, **extra)
        if optimizer == "sgd"
        else tapefit.optimizers.Adam(schedule, **extra)
    )
    model.compile(opt, tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
    return model.get_weights(), int(opt.iterations)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_accumulated_small_batches_give_the_large_batch_weights(optimizer):
    large, large_steps = _train(32, None, optimizer)
    small, small_steps = _train(8, 4, optimizer)
    assert small_steps == large_steps == 6
    for a, b in zip(small, large):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    plain_small, _ = _train(8, None, optimizer)
    assert not np.allclose(plain_small[0], large[0], atol=1e-4)

