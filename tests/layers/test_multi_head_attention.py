"""``MultiHeadAttention`` against Keras 3 (torch backend) with the same weights: outputs, scores,
masks, options, training, saving."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers as L
from tests.keras_parity import keras

RNG = np.random.default_rng(0)
QUERY = RNG.standard_normal((3, 5, 8)).astype("float32")
VALUE = RNG.standard_normal((3, 6, 6)).astype("float32")  # another width: build takes each input's shape
KEY = RNG.standard_normal((3, 6, 7)).astype("float32")
TOKENS_Q = np.array([[3, 4, 5, 0, 0], [1, 2, 0, 0, 0], [0, 0, 0, 0, 0], [6, 7, 8, 9, 1]])
TOKENS_V = np.array([[3, 4, 0, 0, 0, 0], [1, 2, 3, 4, 0, 0], [1, 0, 0, 0, 0, 0], [6, 7, 8, 9, 1, 2]])


def _np(x):
    return x.detach().numpy() if isinstance(x, torch.Tensor) else keras.ops.convert_to_numpy(x)


def _pair(*inputs, **kwargs):
    """A Keras layer and ours, built on ``inputs``, with Keras's weights copied into ours."""
    theirs = keras.layers.MultiHeadAttention(**kwargs)
    theirs(*inputs)
    ours = L.MultiHeadAttention(**kwargs)
    ours(*[torch.from_numpy(x) for x in inputs])
    assert [tuple(w.shape) for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    assert not np.allclose(ours.get_weights()[0], theirs.get_weights()[0])
    ours.set_weights(theirs.get_weights())
    return ours, theirs


OPTIONS = [
    {},
    {"value_dim": 3, "output_shape": 5},
    {"output_shape": (2, 3)},
    {"use_bias": False},
    {"use_gate": True},
    {"sliding_window": 2},
    {"dropout": 0.3},
    {"kernel_initializer": "he_normal", "bias_initializer": "ones"},
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("with_key", [False, True])
def test_outputs_and_scores_match_keras(options, with_key):
    inputs = (QUERY, VALUE, KEY) if with_key else (QUERY, VALUE)
    ours, theirs = _pair(*inputs, num_heads=2, key_dim=4, **options)
    args = [torch.from_numpy(x) for x in inputs]
    np.testing.assert_allclose(_np(ours(*args)), _np(theirs(*inputs)), rtol=1e-5, atol=1e-6)
    out, scores = ours(*args, return_attention_scores=True)
    out_k, scores_k = theirs(*inputs, return_attention_scores=True)
    np.testing.assert_allclose(_np(out), _np(out_k), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(scores), _np(scores_k), rtol=1e-5, atol=1e-6)
    assert tuple(out.shape) == ours.compute_output_shape(QUERY.shape, VALUE.shape)


@pytest.mark.parametrize("scores", [False, True])
def test_attention_mask_causal_mask_and_sliding_window_match_keras(scores):
    mask = RNG.random((3, 5, 6)) > 0.3
    mask[1, 2] = False  # a query that may attend to nothing
    for options in ({}, {"sliding_window": 3}):
        ours, theirs = _pair(QUERY, VALUE, num_heads=2, key_dim=4, **options)
        for kwargs in (
            {"use_causal_mask": True},
            {"attention_mask": mask},
            {"attention_mask": mask, "use_causal_mask": True},
        ):
            got = ours(
                torch.from_numpy(QUERY),
                torch.from_numpy(VALUE),
                return_attention_scores=scores,
                **{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()},
            )
            expected = theirs(QUERY, VALUE, return_attention_scores=scores, **kwargs)
            for a, b in zip(got if scores else [got], expected if scores else [expected]):
                np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axes", [None, (1, 2), (2,), -2])
def test_attention_over_several_axes_matches_keras(axes):
    x = RNG.standard_normal((2, 3, 4, 8)).astype("float32")
    ours, theirs = _pair(x, x, num_heads=2, key_dim=4, attention_axes=axes)
    out, scores = ours(torch.from_numpy(x), torch.from_numpy(x), return_attention_scores=True)
    out_k, scores_k = theirs(x, x, return_attention_scores=True)
    np.testing.assert_allclose(_np(out), _np(out_k), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(scores), _np(scores_k), rtol=1e-5, atol=1e-6)


def _masked_model(lib, mha, mask_query=True):
    q_in, v_in = lib.Input((5,), dtype="int32"), lib.Input((6,), dtype="int32")
    q = lib.layers.Embedding(10, 8, mask_zero=mask_query)(q_in)
    v = lib.layers.Embedding(10, 8, mask_zero=True)(v_in)
    h = mha(q, v)
    pooled = lib.layers.GlobalAveragePooling1D()(h)
    return lib.Model([q_in, v_in], [h, lib.layers.Dense(3)(pooled)])


@pytest.mark.parametrize("options", [{}, {"dropout": 0.3}, {"dropout": 0.3, "seed": 1}])
@pytest.mark.parametrize("mask_query", [True, False])
def test_keras_masks_from_embeddings_match_keras(options, mask_query):
    # Masking only the values checks that every input's mask is read, not only the first's.
    ours = _masked_model(tapefit, L.MultiHeadAttention(2, 4, **options), mask_query)
    theirs = _masked_model(keras, keras.layers.MultiHeadAttention(2, 4, **options), mask_query)
    ours.set_weights(theirs.get_weights())
    got = ours([torch.from_numpy(TOKENS_Q), torch.from_numpy(TOKENS_V)])
    expected = theirs([TOKENS_Q, TOKENS_V])
    for a, b in zip(got, expected):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)
    if mask_query:
        np.testing.assert_array_equal(_np(got[0]._keras_mask), TOKENS_Q != 0)
    else:
        assert getattr(got[0], "_keras_mask", None) is None


def test_masked_inputs_neither_warn_nor_lose_their_mask():
    q = L.Embedding(10, 8, mask_zero=True)(torch.from_numpy(TOKENS_Q))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = L.MultiHeadAttention(2, 4)(q, q)
    assert q._keras_mask is not None
    np.testing.assert_array_equal(_np(out._keras_mask), TOKENS_Q != 0)


def test_training_matches_keras_fit():
    ours = _masked_model(tapefit, L.MultiHeadAttention(2, 4))
    theirs = _masked_model(keras, keras.layers.MultiHeadAttention(2, 4))
    ours.set_weights(theirs.get_weights())
    x = [np.tile(TOKENS_Q, (4, 1)), np.tile(TOKENS_V, (4, 1))]
    y = np.arange(16) % 3
    for model, lib in ((ours, tapefit), (theirs, keras)):
        model.compile(
            optimizer=lib.optimizers.SGD(0.1),
            loss=[None, lib.losses.SparseCategoricalCrossentropy(from_logits=True)],
        )
    # Keras's losses list allows None for an output without a loss; train on the logits only.
    h_ours = ours.fit(
        x, [np.zeros((16, 5, 8), "float32"), y], batch_size=4, epochs=2, shuffle=False, verbose=0
    )
    h_theirs = theirs.fit(
        x, [np.zeros((16, 5, 8), "float32"), y], batch_size=4, epochs=2, shuffle=False, verbose=0
    )
    np.testing.assert_allclose(h_ours.history["loss"], h_theirs.history["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)


def test_dropout_acts_in_training_only_and_scores_are_taken_before_it():
    layer = L.MultiHeadAttention(2, 4, dropout=0.5, seed=3)
    q, v = torch.from_numpy(QUERY), torch.from_numpy(VALUE)
    out, scores = layer(q, v, return_attention_scores=True)
    out_t, scores_t = layer(q, v, return_attention_scores=True, training=True)
    torch.testing.assert_close(scores_t, scores)
    assert not torch.allclose(out_t, out)
    torch.testing.assert_close(layer(q, v, training=False), out)
    unseeded = L.MultiHeadAttention(2, 4, dropout=0.5)
    unseeded(q, v)
    unseeded.set_weights(layer.get_weights())
    assert not torch.allclose(unseeded(q, v, training=True), out)
    torch.testing.assert_close(unseeded(q, v), out)


def test_seeded_dropout_repeats_for_the_same_seed():
    def run():
        layer = L.MultiHeadAttention(
            2, 4, dropout=0.5, seed=7, kernel_initializer=tapefit.initializers.GlorotUniform(1)
        )
        return layer(torch.from_numpy(QUERY), torch.from_numpy(VALUE), training=True)

    torch.testing.assert_close(run(), run())


def test_flash_attention_options():
    q = torch.from_numpy(QUERY)
    ours = L.MultiHeadAttention(2, 4)
    ref = ours(q, q)
    for flash in (True, False):
        other = L.MultiHeadAttention(2, 4, flash_attention=flash)
        other(q, q)
        other.set_weights(ours.get_weights())
        torch.testing.assert_close(other(q, q), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="return_attention_scores=True needs the scores"):
        other = L.MultiHeadAttention(2, 4, flash_attention=True)
        other(q, q, return_attention_scores=True)
    with pytest.raises(ValueError, match="dropout is not supported with flash_attention=True"):
        L.MultiHeadAttention(2, 4, dropout=0.1, flash_attention=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_heads": 0, "key_dim": 4}, "num_heads must be a positive integer"),
        ({"num_heads": 2, "key_dim": 2.5}, "key_dim must be a positive integer"),
        ({"num_heads": 2, "key_dim": 4, "value_dim": -1}, "value_dim must be a positive integer"),
        ({"num_heads": 2, "key_dim": 4, "sliding_window": 0}, "sliding_window must be None"),
        ({"num_heads": 2, "key_dim": 4, "attention_axes": "1"}, "attention_axes must be an int"),
        ({"num_heads": 2, "key_dim": 4, "dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        L.MultiHeadAttention(**kwargs)


def test_value_and_key_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="value and key must have the same shape except for the last axis"):
        L.MultiHeadAttention(2, 4)(torch.from_numpy(QUERY), torch.from_numpy(VALUE), torch.randn(3, 4, 7))


def test_config_round_trip_and_keras_keys():
    layer = L.MultiHeadAttention(2, 4, value_dim=3, output_shape=5, dropout=0.1, use_gate=True, seed=2)
    again = L.MultiHeadAttention.from_config(layer.get_config())
    q = torch.from_numpy(QUERY)
    layer(q, q)
    again(q, q)
    again.set_weights(layer.get_weights())
    torch.testing.assert_close(again(q, q), layer(q, q))
    assert set(layer.get_config()) == set(keras.layers.MultiHeadAttention(2, 4).get_config()) - {"dtype"}


def test_functional_model_saves_loads_and_compiles(tmp_path):
    inputs = L.Input((5, 8))
    h = L.MultiHeadAttention(2, 4)(inputs, inputs, use_causal_mask=True)
    model = tapefit.Model(inputs, L.Dense(3)(L.GlobalAveragePooling1D()(h)))
    x, y = torch.randn(32, 5, 8), torch.randint(0, 3, (32,))
    eager = tapefit.Model.from_config(model.get_config())
    eager.set_weights(model.get_weights())
    for m, jit in ((model, True), (eager, False)):
        m.compile(tapefit.optimizers.SGD(0.1), "sparse_categorical_crossentropy", jit_compile=jit)
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    model.save(tmp_path / "m.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "m.tapefit")
    torch.testing.assert_close(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_keyword_inputs_keep_the_query_mask_as_in_keras():
    def build(lib, mha):
        tokens = lib.Input((5,), dtype="int32")
        embedded = lib.layers.Embedding(10, 8, mask_zero=True)(tokens)
        return lib.Model(tokens, lib.layers.GlobalAveragePooling1D()(mha(query=embedded, value=embedded)))

    ours, theirs = (
        build(tapefit, L.MultiHeadAttention(2, 4)),
        build(keras, keras.layers.MultiHeadAttention(2, 4)),
    )
    ours.set_weights(theirs.get_weights())
    tokens = TOKENS_Q[[0, 1, 3]]
    np.testing.assert_allclose(_np(ours(torch.from_numpy(tokens))), _np(theirs(tokens)), rtol=1e-5, atol=1e-6)


def test_numpy_inputs_and_attention_mask_are_accepted():
    ours, theirs = _pair(QUERY, VALUE, num_heads=2, key_dim=4)
    mask = RNG.random((3, 5, 6)) > 0.5
    got = ours(query=QUERY, value=VALUE, attention_mask=mask)
    np.testing.assert_allclose(_np(got), _np(theirs(QUERY, VALUE, attention_mask=mask)), rtol=1e-5, atol=1e-6)


def test_a_subclass_written_against_keras_internals_runs():
    class Scaled(L.MultiHeadAttention):
        """Doubles the scores; uses the attribute names Keras's own subclasses use."""

        def _compute_attention(
            self,
            query,
            key,
            value,
            attention_mask=None,
            training=None,
            return_attention_scores=False,
            **kwargs,
        ):
            query = query * self._inverse_sqrt_key_dim * 2.0
            scores = self._masked_softmax(
                torch.einsum(self._dot_product_equation, key, query), attention_mask
            )
            return torch.einsum(self._combine_equation, scores, value), scores

    base = L.MultiHeadAttention(2, 4)
    q = torch.from_numpy(QUERY)
    base(q, q)
    scaled = Scaled(2, 4)
    scaled(q, q)
    scaled.set_weights(base.get_weights())
    projected = base._query_dense(q), base._key_dense(q), base._value_dense(q)
    expected, _ = base._compute_attention(projected[0] * 2.0, *projected[1:], return_attention_scores=True)
    torch.testing.assert_close(scaled(q, q), base._output_dense(expected), rtol=1e-5, atol=1e-6)
    assert scaled.query_dense is scaled._query_dense


def test_mixed_bfloat16_runs_in_bfloat16_and_returns_float32():
    tapefit.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = L.MultiHeadAttention(2, 4)
        inputs = L.Input((5, 8))
        model = tapefit.Model(inputs, layer(inputs, inputs, use_causal_mask=True))
    finally:
        tapefit.mixed_precision.set_global_policy("float32")
    reference = L.MultiHeadAttention(2, 4)
    x = torch.from_numpy(QUERY)
    reference(x, x)
    reference.set_weights(layer.get_weights())
    out = model(x)
    assert out.dtype == torch.float32 and layer._query_dense.kernel.dtype == torch.float32
    torch.testing.assert_close(out, reference(x, x, use_causal_mask=True), rtol=0.05, atol=0.05)
