"""SimpleRNN, LSTM and GRU against Keras 3 (torch backend) with the same weights: outputs,
states, masks, go_backwards, reset_after, training; and torch's fused kernels against the loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers as L
from tests.keras_parity import assert_config_round_trip, keras

NAMES = ["SimpleRNN", "LSTM", "GRU"]


def _sequences(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((3, 6, 4)).astype("float32")


def _mask() -> np.ndarray:
    mask = np.ones((3, 6), bool)
    mask[0, 4:] = False  # right-padded
    mask[1, 2] = False  # a gap
    mask[2, :2] = False  # left-padded
    return mask


def _pair(name: str, **kwargs):
    ours, theirs = getattr(L, name)(5, **kwargs), getattr(keras.layers, name)(5, **kwargs)
    x = _sequences()
    ours(torch.from_numpy(x))
    theirs(x)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def _assert_same(ours, theirs, atol=1e-6):
    ours = ours if isinstance(ours, tuple) else (ours,)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.detach().numpy(), keras.ops.convert_to_numpy(b), atol=atol, rtol=1e-5)


OPTIONS = [
    {},
    {"return_sequences": True},
    {"return_state": True},
    {"return_sequences": True, "return_state": True, "go_backwards": True},
    {"use_bias": False, "return_sequences": True},
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_matches_keras(name, options, masked):
    ours, theirs = _pair(name, **options)
    x = _sequences(1)
    if masked:
        _assert_same(ours(torch.from_numpy(x), mask=torch.from_numpy(_mask())), theirs(x, mask=_mask()))
    else:
        _assert_same(ours(torch.from_numpy(x)), theirs(x))


@pytest.mark.parametrize(
    "name, options",
    [
        ("GRU", {"reset_after": False, "return_sequences": True}),
        ("SimpleRNN", {"activation": "relu"}),
        ("LSTM", {"activation": "relu", "recurrent_activation": "hard_sigmoid", "return_sequences": True}),
    ],
)
def test_other_variants_match_keras(name, options):
    ours, theirs = _pair(name, **options)
    x = _sequences(2)
    _assert_same(ours(torch.from_numpy(x)), theirs(x))
    _assert_same(ours(torch.from_numpy(x), mask=torch.from_numpy(_mask())), theirs(x, mask=_mask()))


@pytest.mark.parametrize("name", NAMES)
def test_weights_have_keras_shapes_and_initial_state_is_used(name):
    ours, theirs = _pair(name)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    x = _sequences(3)
    n = 2 if name == "LSTM" else 1
    states = [np.random.default_rng(4 + i).standard_normal((3, 5)).astype("float32") for i in range(n)]
    _assert_same(
        ours(torch.from_numpy(x), initial_state=[torch.from_numpy(s) for s in states]),
        theirs(x, initial_state=states),
    )
    with pytest.raises(ValueError, match=r"initial_state must be .* \(batch, units\) = \(3, 5\)"):
        ours(torch.from_numpy(x), initial_state=[torch.zeros(3, 4)] * n)


def test_lstm_starts_its_forget_gate_bias_at_one():
    bias = L.LSTM(3)
    bias(torch.zeros(1, 2, 4))
    np.testing.assert_array_equal(bias.get_weights()[2], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    plain = L.LSTM(3, unit_forget_bias=False)
    plain(torch.zeros(1, 2, 4))
    assert not plain.get_weights()[2].any()


@pytest.mark.parametrize("name", NAMES)
def test_fused_kernel_equals_the_step_loop_with_gradients(name):
    fused = getattr(L, name)(5, return_sequences=True, return_state=True)
    loop = getattr(L, name)(5, return_sequences=True, return_state=True)
    loop._fusable = lambda: False
    x = torch.from_numpy(_sequences(5)).requires_grad_()
    fused(x)
    loop(x)
    loop.set_weights(fused.get_weights())
    a, b = fused(x), loop(x)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    grads_a = torch.autograd.grad(sum(t.square().sum() for t in a), [x, *fused.trainable_weights])
    grads_b = torch.autograd.grad(sum(t.square().sum() for t in b), [x, *loop.trainable_weights])
    for u, v in zip(grads_a, grads_b):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-6)


def test_use_cudnn_true_refuses_what_keras_refuses():
    layer = L.GRU(3, use_cudnn=True, name="gru")
    layer(torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="'gru': use_cudnn=True, but the input has a mask"):
        layer(torch.zeros(2, 4, 3), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="use_cudnn=True, but recurrent_dropout is set"):
        L.LSTM(3, recurrent_dropout=0.2, use_cudnn=True)(torch.zeros(2, 4, 3))  # even at inference
    with pytest.raises(ValueError, match="use_cudnn=True, but reset_after is False"):
        L.GRU(3, reset_after=False, use_cudnn=True)(torch.zeros(2, 4, 3))
    ours, theirs = _pair("LSTM", activation="relu", use_cudnn=True)  # runs, as in Keras
    _assert_same(ours(torch.from_numpy(_sequences())), theirs(_sequences()))
    with pytest.raises(
        TypeError, match=r"SimpleRNN\(\) got unexpected keyword argument\(s\) \['use_cudnn'\]"
    ):
        L.SimpleRNN(3, use_cudnn=False)


def test_mask_shape_and_numpy_initial_states():
    layer = L.GRU(5, name="gru")
    x = torch.from_numpy(_sequences())
    with pytest.raises(
        ValueError, match=r"'gru': the mask must have shape \(batch, timesteps\) = \(3, 6\), got \(3, 7\)"
    ):
        layer(x, mask=torch.ones(3, 7, dtype=torch.bool))
    state = np.random.default_rng(9).standard_normal((3, 5)).astype("float32")
    torch.testing.assert_close(
        layer(x, initial_state=[state]), layer(x, initial_state=[torch.from_numpy(state)])
    )


@pytest.mark.parametrize("name", NAMES)
def test_compiled_steps_train_as_eager_ones(name):
    x, y = _sequences(10), np.random.default_rng(11).standard_normal((3, 1)).astype("float32")
    models = []
    for jit in (False, True):
        tapefit.utils.set_random_seed(0)
        model = tapefit.Sequential([tapefit.Input((6, 4)), getattr(L, name)(5), L.Dense(1)])
        model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
        model.fit(x, y, batch_size=3, epochs=2, verbose=0)
        models.append(model)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_bfloat16_runs_the_fused_kernel_in_bfloat16(name, monkeypatch):
    reference = getattr(L, name)(5)
    x = torch.from_numpy(_sequences(12))
    want = reference(x)
    tapefit.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = getattr(L, name)(5)
    finally:
        tapefit.mixed_precision.set_global_policy("float32")
    mixed(x)
    mixed.set_weights(reference.get_weights())
    dtypes = []
    original = L.recurrent._base.call_kernel
    monkeypatch.setattr(
        L.recurrent._base, "call_kernel", lambda op, x, *a: dtypes.append(x.dtype) or original(op, x, *a)
    )
    got = mixed(x)
    assert dtypes == [torch.bfloat16]
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)
    got.float().sum().backward()
    assert all(w.grad is not None for w in mixed.trainable_weights)


def test_output_masks_follow_keras():
    tokens = np.array([[3, 4, 0, 0], [5, 0, 0, 0]])
    emb = L.Embedding(8, 3, mask_zero=True)(torch.from_numpy(tokens))
    assert torch.equal(L.LSTM(2, return_sequences=True)(emb)._keras_mask, torch.from_numpy(tokens != 0))
    assert getattr(L.LSTM(2)(emb), "_keras_mask", None) is None
    out, h, c = L.LSTM(2, return_sequences=True, return_state=True)(emb)
    assert torch.equal(out._keras_mask, torch.from_numpy(tokens != 0))
    assert getattr(h, "_keras_mask", None) is None


def _classifier(lib, name):
    return lib.Sequential(
        [
            lib.Input((6,), dtype="int64"),
            lib.layers.Embedding(10, 4, mask_zero=True),
            getattr(lib.layers, name)(5),
            lib.layers.Dense(2),
        ]
    )


@pytest.mark.parametrize("name", NAMES)
def test_masked_training_matches_keras_fit(name):
    rng = np.random.default_rng(6)
    x = rng.integers(1, 10, (24, 6))
    for row, length in zip(x, rng.integers(1, 7, 24)):
        row[length:] = 0
    y = rng.integers(0, 2, 24)
    ours, theirs = _classifier(tapefit, name), _classifier(keras, name)
    theirs.set_weights(ours.get_weights())
    for model, lib in ((ours, tapefit), (theirs, keras)):
        model.compile(
            optimizer=lib.optimizers.SGD(0.1),
            loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    h_ours = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    h_theirs = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(h_ours["loss"], h_theirs["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)


def test_functional_model_with_states():
    inp = tapefit.Input((6, 4))
    out, h, c = L.LSTM(5, return_sequences=True, return_state=True)(inp)
    summary = L.GRU(3)(out, initial_state=None)
    model = tapefit.Model(inp, [summary, h, c])
    got = model(torch.from_numpy(_sequences()))
    assert [tuple(t.shape) for t in got] == [(3, 3), (3, 5), (3, 5)]


@pytest.mark.parametrize("name", NAMES)
def test_dropout_draws_one_mask_per_sequence(name):
    layer = getattr(L, name)(4, dropout=0.5, recurrent_dropout=0.5, seed=1, return_sequences=True)
    x = torch.ones(2, 5, 3)
    inference = layer(x)
    torch.testing.assert_close(layer(x), inference)  # inference: no dropout
    trained = layer(x, training=True)
    assert not torch.allclose(trained, inference)
    # Keras clips rates and drops nothing at 1.0 (its rule is 0 < rate < 1).
    layer.dropout = layer.recurrent_dropout = 1.0
    torch.testing.assert_close(layer(x, training=True), inference)


@pytest.mark.parametrize("name", NAMES)
def test_stateful_layers_carry_states_across_calls_as_keras(name):
    x1, x2 = np.random.default_rng(16).standard_normal((2, 4, 3, 2)).astype("float32")
    ours, theirs = getattr(L, name)(5, stateful=True), getattr(keras.layers, name)(5, stateful=True)
    ours(torch.from_numpy(x1))
    ours.reset_state()
    theirs.build((4, 3, 2))
    theirs.set_weights(ours.get_weights())
    for x in (x1, x2):  # the second call starts from the first one's final states
        _assert_same(ours(torch.from_numpy(x)), theirs(x))
    ours.reset_states()
    theirs.reset_state()
    _assert_same(ours(torch.from_numpy(x2)), theirs(x2))
    with pytest.raises(
        ValueError,
        match=r"is stateful: every batch must have the batch size its states were made for \(4\), got 3",
    ):
        ours(torch.from_numpy(x1[:3]))


def test_stateful_training_carries_each_batchs_final_states_to_the_next():
    # Keras 3.15's own fit fails here on its torch backend (an in-place state update breaks
    # autograd), so the reference is the same training written by hand with explicit states.
    rng = np.random.default_rng(17)
    x, y = rng.standard_normal((16, 3, 2)).astype("float32"), rng.standard_normal((16, 1)).astype("float32")
    model = tapefit.Sequential([tapefit.Input((3, 2), batch_size=4), L.LSTM(4, stateful=True), L.Dense(1)])
    initial = model.get_weights()
    model.compile(optimizer=tapefit.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)

    lstm, dense = L.LSTM(4, return_state=True), L.Dense(1)
    lstm(torch.zeros(4, 3, 2))
    dense(torch.zeros(4, 4))
    lstm.set_weights(initial[:3])
    dense.set_weights(initial[3:])
    params = [*lstm.trainable_weights, *dense.trainable_weights]
    states = None
    for start in range(0, 16, 4):
        out, h, c = lstm(torch.from_numpy(x[start : start + 4]), initial_state=states)
        loss = torch.nn.functional.mse_loss(dense(out), torch.from_numpy(y[start : start + 4]))
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.1 * g
        states = [h.detach(), c.detach()]
    for got, want in zip(model.get_weights(), lstm.get_weights() + dense.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_configs_round_trip_and_errors():
    for layer in (
        L.SimpleRNN(3, activation="relu", dropout=0.1, return_sequences=True),
        L.LSTM(3, unit_forget_bias=False, go_backwards=True, kernel_regularizer="l2"),
        L.GRU(3, reset_after=False, return_state=True, use_cudnn=False),
    ):
        assert_config_round_trip(layer)
    assert_config_round_trip(L.LSTM(3, stateful=True))
    with pytest.raises(ValueError, match="units must be a positive integer"):
        L.GRU(0)
    with pytest.raises(ValueError, match=r"expects sequences of shape \(batch, timesteps, features\)"):
        L.LSTM(3)(torch.zeros(2, 3))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize(
    "options", [{}, {"return_sequences": True, "return_state": True}], ids=["last", "sequences+states"]
)
def test_bidirectional_matches_keras(name, merge_mode, options):
    ours = L.Bidirectional(getattr(L, name)(3, **options), merge_mode=merge_mode)
    theirs = keras.layers.Bidirectional(getattr(keras.layers, name)(3, **options), merge_mode=merge_mode)
    x = _sequences(7)
    ours(torch.from_numpy(x))
    theirs(x)
    theirs.set_weights(ours.get_weights())
    _assert_same(ours(torch.from_numpy(x)), theirs(x))
    # Masked: the inner layers output zeros at masked steps (Keras's wrapper sets them so).
    _assert_same(ours(torch.from_numpy(x), mask=torch.from_numpy(_mask())), theirs(x, mask=_mask()))


def test_bidirectional_config_weights_saving_and_errors(tmp_path):
    layer = L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum", name="both")
    layer(torch.zeros(1, 4, 2))
    clone = L.Bidirectional.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.backward_layer.go_backwards and not clone.forward_layer.go_backwards
    copied = L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum", weights=layer.get_weights())
    x = torch.from_numpy(_sequences(8)[:, :, :2].copy())
    copied(x)
    torch.testing.assert_close(copied(x), layer(x))

    inp = tapefit.Input((6, 4))
    model = tapefit.Model(inp, L.Dense(2)(L.Bidirectional(L.LSTM(3))(inp)))
    model.save(tmp_path / "bi.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "bi.tapefit")
    torch.testing.assert_close(loaded(torch.from_numpy(_sequences())), model(torch.from_numpy(_sequences())))

    with pytest.raises(ValueError, match="must be a recurrent layer"):
        L.Bidirectional(L.Dense(3))
    with pytest.raises(ValueError, match="merge_mode must be"):
        L.Bidirectional(L.LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match="must differ in go_backwards"):
        L.Bidirectional(L.LSTM(3), backward_layer=L.LSTM(3))


def _padded(kind: str = "post") -> np.ndarray:
    """Rows keeping 6, 2 and 4 steps: padding after them ("post", Keras's pad_sequences option),
    before them ("pre", its default), or on both sides."""
    mask = np.zeros((3, 6), bool)
    for row, length in enumerate((6, 2, 4)):
        start = {"post": 0, "pre": 6 - length, "both": (6 - length) // 2}[kind]
        mask[row, start : start + length] = True
    return mask


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["post", "pre", "both"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"return_sequences": True, "return_state": True},
        {"return_sequences": True, "zero_output_for_mask": True},
        {"return_sequences": True, "go_backwards": True},
    ],
    ids=["last", "sequences+states", "zero-output", "backwards"],
)
def test_padded_rows_run_packed_and_match_keras(name, kind, options, monkeypatch):
    ours, theirs = _pair(name, **options)
    x = _sequences(13)
    packed = []
    original = L.recurrent._base.call_kernel
    monkeypatch.setattr(
        L.recurrent._base, "call_kernel", lambda *a: packed.append(a[-1] is not None) or original(*a)
    )
    mask = _padded(kind)
    _assert_same(ours(torch.from_numpy(x), mask=torch.from_numpy(mask)), theirs(x, mask=mask))
    assert packed == [True]
    # A row with no kept step, or with a gap, takes the step loop, with the same numbers as Keras.
    for broken in (0, 2):
        odd = mask.copy()
        odd[1] = False if broken == 0 else [True, False, True, False, False, False]
        _assert_same(ours(torch.from_numpy(x), mask=torch.from_numpy(odd)), theirs(x, mask=odd))
    assert packed == [True]


@pytest.mark.parametrize("name", NAMES)
def test_packed_sequences_start_from_each_rows_initial_state(name):
    ours, theirs = _pair(name, return_state=True)
    x = _sequences(14)
    n = 2 if name == "LSTM" else 1
    states = [np.random.default_rng(15 + i).standard_normal((3, 5)).astype("float32") for i in range(n)]
    _assert_same(
        ours(
            torch.from_numpy(x),
            initial_state=[torch.from_numpy(s) for s in states],
            mask=torch.from_numpy(_padded("pre")),
        ),
        theirs(x, initial_state=states, mask=_padded("pre")),
    )


def test_bidirectional_checks_the_number_of_initial_states():
    layer = L.Bidirectional(L.LSTM(3), name="both")
    x = torch.from_numpy(_sequences())
    with pytest.raises(ValueError, match="'both': initial_state must be a list of 4 tensors, .* got 3"):
        layer(x, initial_state=[torch.zeros(3, 3)] * 3)


def test_units_may_be_numpy_integers():
    assert L.LSTM(np.int64(4)).units == 4


class _StatefulNet(tapefit.Model):
    def __init__(self):
        super().__init__()
        self.rnn = L.LSTM(3, stateful=True)

    def call(self, x):
        return self.rnn(x)


@pytest.mark.parametrize("kind", ["sequential", "subclassed"])
def test_building_a_stateful_model_leaves_its_states_alone(kind):
    model = tapefit.Sequential([L.LSTM(3, stateful=True)]) if kind == "sequential" else _StatefulNet()
    model.build((None, 5, 2))  # runs the model on a placeholder batch to learn its shapes
    x = torch.from_numpy(_sequences()[:, :5, :2].copy())
    first = model(x)
    (model.layers[0] if kind == "sequential" else model.rnn).reset_state()
    torch.testing.assert_close(first, model(x))  # the first call started from zeros, at batch size 3
