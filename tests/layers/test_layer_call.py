"""Layer.__call__'s lean path (built layers called without torch's module machinery) keeps every
behaviour of the full path: hooks, the training flag through nested layers, instance overrides."""

import numpy as np
import torch

import tapefit
from tapefit import layers


class Probe(layers.Layer):
    """Records the training flag it was called with and the one nested layers inherit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list = []

    def call(self, x, training=None):
        self.seen.append(training)
        return x + 1


class NoTrainingArg(layers.Layer):
    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x):
        return self.inner(x)


def _model():
    inner = Probe()
    model = tapefit.Sequential([tapefit.Input((3,)), layers.Dense(3), NoTrainingArg(inner)])
    return model, inner


def test_the_training_flag_reaches_nested_layers_on_every_call():
    model, inner = _model()
    inner.seen.clear()  # the symbolic trace at construction called it too
    x = torch.ones(2, 3)
    for _ in range(3):  # the first call builds and takes the full path, the next ones the lean one
        model(x, training=True)
        model(x, training=False)
        model(x)
    assert inner.seen == [True, False, False] * 3


def test_an_explicit_training_flag_inside_a_call_applies_to_that_layer_and_its_children():
    probe = Probe()

    class Outer(tapefit.Model):
        def __init__(self):
            super().__init__()
            self.wrapped = NoTrainingArg(probe)

        def call(self, x, training=None):
            return self.wrapped(x, training=True)  # forces training for this branch only

    model = Outer()
    x = torch.ones(1, 2)
    for _ in range(3):
        model(x, training=False)
    assert probe.seen == [True, True, True]


def test_hooks_registered_after_the_first_call_still_run():
    model, _ = _model()
    x = torch.ones(2, 3)
    model(x)
    dense = model.layers[0]
    calls = []
    handle = dense.register_forward_hook(lambda m, args, out: calls.append(tuple(out.shape)))
    pre = dense.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    out = model(x)
    assert calls == [(2, 3)]
    expected = dense.bias.detach() + 1  # the pre-hook zeroed the input: Dense gives its bias
    assert torch.allclose(out, expected.expand(2, 3))
    handle.remove()
    pre.remove()
    model(x)
    assert calls == [(2, 3)]


def test_global_module_hooks_see_tapefit_layers():
    model, _ = _model()
    x = torch.ones(2, 3)
    model(x)
    names = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, args, out: names.append(type(m).__name__)
    )
    try:
        model(x)
    finally:
        handle.remove()
    assert names.count("Dense") == 1 and names.count("Probe") == 1 and names.count("Sequential") == 1


def test_an_instance_level_call_override_is_used():
    model, inner = _model()
    x = torch.ones(2, 3)
    model(x)
    inner.call = lambda x, training=None: x * 0
    assert torch.equal(model(x), torch.zeros(2, 3))


def test_the_outermost_call_converts_arrays_and_clears_last_call_losses():
    class Activity(layers.Layer):
        def call(self, x):
            self.add_loss(x.sum())
            return x

    model = tapefit.Sequential([tapefit.Input((2,)), Activity()])
    for _ in range(3):
        out = model(np.ones((4, 2), dtype="float32"))
        assert isinstance(out, torch.Tensor)
        assert len(model.losses) == 1 and float(model.losses[0]) == 8.0
