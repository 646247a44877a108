"""Rank 1 fails in its third training step; every rank must exit non-zero, naming rank 1.

``TAPEFIT_TEST_MODE``: ``raise`` (rank 1 raises), ``caught`` (first, both ranks catch an error
of their own from ``evaluate``, then rank 1 raises), ``hang`` (rank 1 sleeps without closing its
connections, so rank 0 can only notice at the collective timeout).
Run by test_failures.py as two plain processes (no torchrun agent to stop the survivor).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

import tapefit
from tapefit import layers

MODE = os.environ.get("TAPEFIT_TEST_MODE", "raise")


class FailsOnRankOne(layers.Layer):
    """Identity, except that on rank 1 the third training call raises."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def call(self, x, training=False):
        if training:
            self.calls += 1
            if tapefit.distribute.rank() == 1 and self.calls == 3:
                if MODE == "hang":
                    time.sleep(20)
                raise ValueError("boom in step 3")
        return x


if __name__ == "__main__":
    torch.set_num_threads(1)
    model = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(4), FailsOnRankOne(), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((64, 4), "float32")
    if MODE == "caught":
        try:
            model.evaluate(x, np.zeros((63, 2), "float32"), verbose=0)  # lengths differ: a ValueError
        except ValueError:
            pass
    model.fit(x, np.zeros((64, 2), "float32"), batch_size=8, epochs=100, verbose=0)
