"""SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells and RNN(cell) against Keras 3 (torch backend)
with the same weights: single steps, sequences with masks and states, custom cells, training,
configs and saving; and RNN(cell) against tapefit's own fused layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers as L
from tapefit.layers import recurrent as R
from tests.keras_parity import keras

CELLS = ["SimpleRNNCell", "LSTMCell", "GRUCell"]
LAYER_OF = {"SimpleRNNCell": "SimpleRNN", "LSTMCell": "LSTM", "GRUCell": "GRU"}


def _x(seed: int = 0, shape=(3, 6, 4)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _tokens() -> np.ndarray:
    """Rows padded after, with a gap, and before the data: Embedding(mask_zero=True) masks the zeros."""
    return np.array([[3, 4, 5, 1, 0, 0], [2, 7, 0, 8, 9, 1], [0, 0, 6, 2, 3, 4]])


def _flat(x) -> list:
    return [t for v in x for t in _flat(v)] if isinstance(x, (list, tuple)) else [x]


def _np(t) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else keras.ops.convert_to_numpy(t)


def _assert_same(ours, theirs, atol=1e-6):
    """Same values in the same nesting (tuples and lists alike, as both libraries return them)."""
    if isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs), (ours, theirs)
        for a, b in zip(ours, theirs):
            _assert_same(a, b, atol)
    else:
        assert isinstance(ours, torch.Tensor), type(ours)
        np.testing.assert_allclose(_np(ours), _np(theirs), atol=atol, rtol=1e-5)


def _rnn_pair(cells, **options):
    """RNN of ``cells`` ((name, units) pairs; several are stacked) in both libraries, built on the
    same sequences, Keras given tapefit's weights."""

    def make(lib):
        made = [getattr(lib, name)(units) for name, units in cells]
        return made if len(made) > 1 else made[0]

    ours, theirs = R.RNN(make(R), **options), keras.layers.RNN(make(keras.layers), **options)
    ours(torch.from_numpy(_x()))
    theirs(_x())
    theirs.set_weights(ours.get_weights())
    return ours, theirs


STEP_VARIANTS = [
    ("SimpleRNNCell", {}),
    ("SimpleRNNCell", {"activation": "relu", "use_bias": False}),
    ("LSTMCell", {}),
    ("LSTMCell", {"unit_forget_bias": False, "recurrent_activation": "hard_sigmoid"}),
    ("GRUCell", {}),
    ("GRUCell", {"reset_after": False}),
    ("GRUCell", {"use_bias": False}),
]


@pytest.mark.parametrize("name, kwargs", STEP_VARIANTS)
def test_one_step_matches_keras(name, kwargs):
    ours, theirs = getattr(R, name)(5, **kwargs), getattr(keras.layers, name)(5, **kwargs)
    ours.build((3, 4))
    theirs.build((3, 4))
    assert ours.state_size == theirs.state_size and ours.output_size == theirs.output_size == 5
    assert [p.path.split("/")[-1] for p in ours.weights] == [v.name for v in theirs.weights]
    theirs.set_weights(ours.get_weights())  # checks that every shape is Keras's
    rng = np.random.default_rng(1)  # non-zero biases too
    weights = [w + 0.1 * rng.standard_normal(w.shape).astype("float32") for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    x = _x(2, (3, 4))
    n = 2 if name == "LSTMCell" else 1
    states = [_x(3 + i, (3, 5)) for i in range(n)]
    got = ours(torch.from_numpy(x), [torch.from_numpy(s) for s in states])
    _assert_same(got, theirs(x, states))
    if n == 1:  # one state given as a bare tensor comes back bare, as Keras's cells return it
        _assert_same(ours(torch.from_numpy(x), torch.from_numpy(states[0])), theirs(x, states[0]))
    zeros = ours.get_initial_state(batch_size=3)
    assert len(zeros) == n and all(tuple(z.shape) == (3, 5) and not z.any() for z in zeros)


SEQUENCE_OPTIONS = [
    {},
    {"return_sequences": True, "return_state": True},
    {"return_sequences": True, "go_backwards": True},
    {"return_sequences": True, "zero_output_for_mask": True},
]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("options", SEQUENCE_OPTIONS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_rnn_of_each_cell_matches_keras(name, options, masked):
    ours, theirs = _rnn_pair([(name, 5)], **options)
    if not masked:
        _assert_same(ours(torch.from_numpy(_x(1))), theirs(_x(1)))
        return
    emb_ours, emb_theirs = L.Embedding(10, 4, mask_zero=True), keras.layers.Embedding(10, 4, mask_zero=True)
    emb_ours(torch.from_numpy(_tokens()))
    emb_theirs(_tokens())
    emb_theirs.set_weights(emb_ours.get_weights())
    got = ours(emb_ours(torch.from_numpy(_tokens())))
    _assert_same(got, theirs(emb_theirs(_tokens())))
    output = got[0] if isinstance(got, tuple) else got
    if options.get("return_sequences"):  # the output mask follows Keras's compute_mask
        assert torch.equal(output._keras_mask, torch.from_numpy(_tokens() != 0))


@pytest.mark.parametrize("name", CELLS)
def test_initial_state_and_explicit_mask_match_keras(name):
    ours, theirs = _rnn_pair([(name, 5)], return_sequences=True, return_state=True)
    n = 2 if name == "LSTMCell" else 1
    states = [_x(5 + i, (3, 5)) for i in range(n)]
    mask = _tokens() != 0
    got = ours(
        torch.from_numpy(_x(4)),
        initial_state=[torch.from_numpy(s) for s in states],
        mask=torch.from_numpy(mask),
    )
    _assert_same(got, theirs(_x(4), initial_state=states, mask=mask))


def test_stacked_cells_match_keras():
    cells = [("LSTMCell", 4), ("GRUCell", 3), ("SimpleRNNCell", 2)]
    ours, theirs = _rnn_pair(cells, return_sequences=True, return_state=True)
    assert isinstance(ours.cell, R.StackedRNNCells)
    assert ours.cell.state_size == theirs.cell.state_size and ours.cell.output_size == 2
    mask = _tokens() != 0
    got = ours(torch.from_numpy(_x(6)), mask=torch.from_numpy(mask))
    _assert_same(got, theirs(_x(6), mask=mask))
    assert ours.compute_output_shape((3, 6, 4)) == theirs.compute_output_shape((3, 6, 4))
    states = [[torch.ones(3, 4), torch.zeros(3, 4)], [torch.ones(3, 3)], [torch.ones(3, 2)]]
    got = ours(torch.from_numpy(_x(7)), initial_state=states)
    _assert_same(got, theirs(_x(7), initial_state=[[s.numpy() for s in group] for group in states]))
    flat = [s for group in states for s in group]  # tapefit also takes the states flat
    _assert_same(_flat(ours(torch.from_numpy(_x(7)), initial_state=flat)), _flat(got))


def _minimal_cell(lib):
    """The MinimalRNNCell of Keras's RNN docs, written for ``lib``."""

    class MinimalRNNCell(lib.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(
                shape=(input_shape[-1], self.units), initializer="uniform", name="kernel"
            )
            self.recurrent_kernel = self.add_weight(
                shape=(self.units, self.units), initializer="uniform", name="recurrent_kernel"
            )

        def call(self, inputs, states):
            output = inputs @ self.kernel + states[0] @ self.recurrent_kernel
            return output, [output]

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return MinimalRNNCell


def test_the_keras_docs_custom_cell_runs_alone_and_stacked_as_in_keras():
    ours_cls, theirs_cls = _minimal_cell(tapefit), _minimal_cell(keras)
    for sizes in ([32], [32, 64]):
        cells_ours, cells_theirs = [ours_cls(u) for u in sizes], [theirs_cls(u) for u in sizes]
        inp, kin = tapefit.Input((None, 5)), keras.Input((None, 5))
        ours = tapefit.Model(inp, R.RNN(cells_ours if len(sizes) > 1 else cells_ours[0])(inp))
        theirs = keras.Model(kin, keras.layers.RNN(cells_theirs if len(sizes) > 1 else cells_theirs[0])(kin))
        theirs.set_weights(ours.get_weights())
        x = _x(8, (2, 7, 5))
        _assert_same(ours(torch.from_numpy(x)), theirs(x), atol=1e-5)
        mask = np.array([[1, 1, 1, 0, 0, 0, 0], [1] * 7], bool)
        rnn_ours, rnn_theirs = ours.layers[-1], theirs.layers[-1]
        _assert_same(
            rnn_ours(torch.from_numpy(x), mask=torch.from_numpy(mask)), rnn_theirs(x, mask=mask), atol=1e-5
        )


@pytest.mark.parametrize("name", CELLS)
def test_rnn_of_a_cell_equals_the_fused_layer_with_dropout_too(name):
    kwargs = {"dropout": 0.3, "recurrent_dropout": 0.4, "seed": 3}
    rnn = R.RNN(getattr(R, name)(4, **kwargs), return_sequences=True, return_state=True)
    layer = getattr(L, LAYER_OF[name])(4, return_sequences=True, return_state=True, **kwargs)
    x = torch.from_numpy(_x(9))
    rnn(x)
    layer(x)
    layer.set_weights(rnn.get_weights())
    mask = torch.from_numpy(_tokens() != 0)
    for call in ({}, {"mask": mask}):
        torch.testing.assert_close(rnn(x, **call), layer(x, **call))
    # Training: the same seeded masks, drawn once per sequence in the same order; same gradients.
    got, want = rnn(x, training=True, mask=mask), layer(x, training=True, mask=mask)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got[0], rnn(x, mask=mask)[0])
    grads = [
        torch.autograd.grad(sum(o.sum() for o in out), m.trainable_weights)
        for out, m in ((got, rnn), (want, layer))
    ]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_dropout_masks_are_drawn_once_per_sequence():
    cell = R.LSTMCell(3, recurrent_dropout=0.5, seed=1)
    rnn = R.RNN(cell, return_sequences=True)
    x = torch.ones(2, 4, 3)
    first, second = rnn(x, training=True), rnn(x, training=True)
    assert not torch.allclose(first, second)  # a new mask for each sequence
    assert cell._dropout_mask is None and cell._recurrent_dropout_mask is None  # reset after the call
    # Called directly, a cell keeps its mask until reset (Keras's DropoutRNNCell).
    states = cell.get_initial_state(batch_size=2)
    masks = cell.get_recurrent_dropout_mask(states[0])
    assert len(masks) == 4 and masks[0].shape == (2, 3)
    assert cell.get_recurrent_dropout_mask(states[0]) is masks
    cell.reset_recurrent_dropout_mask()
    assert cell.get_recurrent_dropout_mask(states[0]) is not masks
    # A mask a direct call left behind (batch 2) is not reused by RNN on a batch of 5.
    assert rnn(torch.ones(5, 4, 3), training=True).shape == (5, 4, 3)


def _classifier(lib, cell_module):
    return lib.Sequential(
        [
            lib.Input((6,), dtype="int64"),
            lib.layers.Embedding(10, 4, mask_zero=True),
            cell_module.RNN(cell_module.GRUCell(5)),
            lib.layers.Dense(2),
        ]
    )


def test_masked_training_matches_keras_fit():
    rng = np.random.default_rng(6)
    x = rng.integers(1, 10, (24, 6))
    for row, length in zip(x, rng.integers(1, 7, 24)):
        row[length:] = 0
    y = rng.integers(0, 2, 24)
    ours, theirs = _classifier(tapefit, R), _classifier(keras, keras.layers)
    theirs.set_weights(ours.get_weights())
    for model, lib in ((ours, tapefit), (theirs, keras)):
        model.compile(
            optimizer=lib.optimizers.SGD(0.1), loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
    h_ours = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    h_theirs = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(h_ours["loss"], h_theirs["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)


def test_stateful_rnn_carries_states_as_keras():
    x1, x2 = _x(10, (2, 4, 3, 2))
    ours = R.RNN(R.LSTMCell(5), stateful=True)
    theirs = keras.layers.RNN(keras.layers.LSTMCell(5), stateful=True)
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
        ValueError, match=r"is stateful: every batch must have the batch size .* \(4\), got 3"
    ):
        ours(torch.from_numpy(x1[:3]))


def _keys(config: dict) -> set[str]:
    return set(config) - {"dtype"}  # Keras writes its dtype policy; tapefit only a set one


def test_configs_have_keras_keys_and_round_trip():
    keras_cells = {n: getattr(keras.layers, n)(3) for n in CELLS}
    for name in CELLS:
        cell = getattr(R, name)(3, dropout=0.1, kernel_regularizer="l2", seed=4)
        assert _keys(cell.get_config()) == _keys(keras_cells[name].get_config())
        clone = type(cell).from_config(cell.get_config())
        assert clone.get_config() == cell.get_config()
    ours = R.RNN([R.LSTMCell(3, unit_forget_bias=False), R.GRUCell(2, reset_after=False)], go_backwards=True)
    theirs = keras.layers.RNN([keras.layers.LSTMCell(3), keras.layers.GRUCell(2)])
    assert _keys(ours.get_config()) == _keys(theirs.get_config())
    assert _keys(ours.get_config()["cell"]["config"]) == _keys(theirs.get_config()["cell"]["config"])
    clone = R.RNN.from_config(ours.get_config())
    assert clone.get_config() == ours.get_config()
    assert [c.unit_forget_bias for c in clone.cell.cells[:1]] == [False] and not clone.cell.cells[
        1
    ].reset_after


def test_models_with_rnn_cells_save_and_load(tmp_path):
    minimal = tapefit.saving.register_serializable(package="tests")(_minimal_cell(tapefit))
    inp = tapefit.Input((6, 4))
    seq = R.RNN([R.LSTMCell(3), minimal(2)], return_sequences=True)(inp)
    both = L.Bidirectional(R.RNN(R.GRUCell(2)))(seq)
    model = tapefit.Model(inp, L.Dense(1)(both))
    model.save(tmp_path / "cells.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "cells.tapefit")
    x = torch.from_numpy(_x(11))
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.state_dict().keys() == model.state_dict().keys()
    config = R.RNN(minimal(2)).get_config()
    assert config["cell"]["class_name"] == "tests>MinimalRNNCell"
    stand_in = _minimal_cell(tapefit)
    rebuilt = R.RNN.from_config(config, custom_objects={"tests>MinimalRNNCell": stand_in})
    assert type(rebuilt.cell) is stand_in


def test_bidirectional_rnn_of_a_cell_matches_keras():
    ours = L.Bidirectional(R.RNN(R.LSTMCell(4), return_sequences=True, return_state=True))
    theirs = keras.layers.Bidirectional(
        keras.layers.RNN(keras.layers.LSTMCell(4), return_sequences=True, return_state=True)
    )
    ours(torch.from_numpy(_x(12)))
    theirs(_x(12))
    theirs.set_weights(ours.get_weights())
    mask = _tokens() != 0
    _assert_same(ours(torch.from_numpy(_x(12)), mask=torch.from_numpy(mask)), theirs(_x(12), mask=mask))


class _NoState(tapefit.layers.Layer):
    def call(self, inputs, states):
        return inputs, states


def test_clear_errors():
    with pytest.raises(ValueError, match="must have a state_size attribute"):
        R.RNN(_NoState())
    with pytest.raises(ValueError, match="must have a state_size attribute"):
        R.StackedRNNCells([R.GRUCell(2), _NoState()])
    with pytest.raises(ValueError, match="must have a call"):
        R.RNN(object())
    with pytest.raises(ValueError, match="units must be a positive integer"):
        R.LSTMCell(0)
    rnn = R.RNN(R.LSTMCell(3), name="lstm_rnn")
    x = torch.zeros(2, 4, 3)
    with pytest.raises(ValueError, match=r"'lstm_rnn': initial_state must be 2 tensor\(s\) .* got 1"):
        rnn(x, initial_state=[torch.zeros(2, 3)])
    with pytest.raises(
        ValueError, match=r"initial_state must be 2 tensor\(s\) of shapes \[\(2, 3\), \(2, 3\)\]"
    ):
        rnn(x, initial_state=[torch.zeros(2, 3), torch.zeros(2, 4)])
    with pytest.raises(ValueError, match=r"expects sequences of shape \(batch, timesteps, features\)"):
        rnn(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="takes 2 state tensor"):
        R.LSTMCell(3)(torch.zeros(2, 3), [torch.zeros(2, 3)])

    class TwoStatesOut(tapefit.layers.Layer):
        state_size = 3

        def call(self, inputs, states):
            return states[0], [states[0], states[0]]

    with pytest.raises(ValueError, match="returned 2 state tensor"):
        R.RNN(TwoStatesOut())(x)
