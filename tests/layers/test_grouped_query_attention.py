"""``GroupedQueryAttention`` against Keras 3's ``GroupQueryAttention`` (torch backend) with the same
weights: outputs, scores, masks, dropout, training, config, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import tapefit
from tapefit.layers.attention.grouped_query_attention import GroupedQueryAttention, GroupQueryAttention
from tests.keras_parity import keras

RNG = np.random.default_rng(0)
QUERY = RNG.standard_normal((3, 5, 8)).astype("float32")
VALUE = RNG.standard_normal((3, 6, 8)).astype("float32")
KEY = RNG.standard_normal((3, 6, 7)).astype("float32")  # another width: build takes each input's shape
TOKENS_Q = np.array([[3, 4, 5, 0, 0], [1, 2, 0, 0, 0], [0, 0, 0, 0, 0], [6, 7, 8, 9, 1]])
TOKENS_V = np.array([[3, 4, 0, 0, 0, 0], [1, 2, 3, 4, 0, 0], [1, 0, 0, 0, 0, 0], [6, 7, 8, 9, 1, 2]])
TOL = {"rtol": 1e-5, "atol": 1e-6}
# Keras warns that its own projections drop the masks of masked inputs; tapefit does not.
pytestmark = pytest.mark.filterwarnings("ignore:Layer .* was passed an input with a mask:UserWarning")


def _np(x):
    return x.detach().numpy() if isinstance(x, torch.Tensor) else keras.ops.convert_to_numpy(x)


def _t(x):
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


def _pair(*inputs, **kwargs):
    """A Keras layer and ours, built on ``inputs``, with Keras's weights copied into ours."""
    theirs = keras.layers.GroupQueryAttention(**kwargs)
    theirs(*inputs)
    ours = GroupQueryAttention(**kwargs)
    ours(*[_t(x) for x in inputs])
    assert [tuple(w.shape) for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    assert not np.allclose(ours.get_weights()[0], theirs.get_weights()[0])
    ours.set_weights(theirs.get_weights())
    return ours, theirs


HEADS = [(4, 4, 2), (3, 4, 1), (2, 4, 4), (5, 6, 3)]  # head_dim, num_query_heads, num_key_value_heads


@pytest.mark.parametrize("heads", HEADS)
@pytest.mark.parametrize("options", [{}, {"use_bias": False, "use_gate": True}, {"dropout": 0.3}])
@pytest.mark.parametrize("with_key", [False, True])
def test_outputs_and_scores_match_keras(heads, options, with_key):
    inputs = (QUERY, VALUE, KEY) if with_key else (QUERY, VALUE)
    ours, theirs = _pair(
        *inputs, head_dim=heads[0], num_query_heads=heads[1], num_key_value_heads=heads[2], **options
    )
    args = [_t(x) for x in inputs]
    np.testing.assert_allclose(_np(ours(*args)), _np(theirs(*inputs)), **TOL)
    out, scores = ours(*args, return_attention_scores=True)
    out_k, scores_k = theirs(*inputs, return_attention_scores=True)
    assert tuple(scores.shape) == (3, heads[1], 5, 6)
    np.testing.assert_allclose(_np(out), _np(out_k), **TOL)
    np.testing.assert_allclose(_np(scores), _np(scores_k), **TOL)
    assert tuple(out.shape) == ours.compute_output_shape(QUERY.shape, VALUE.shape) == QUERY.shape


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("options", [{}, {"sliding_window": 3}, {"dropout": 0.2}])
def test_attention_mask_causal_mask_and_sliding_window_match_keras(scores, options):
    mask = RNG.random((3, 5, 6)) > 0.3
    mask[1, 2] = False  # a query that may attend to nothing
    ours, theirs = _pair(QUERY, VALUE, head_dim=4, num_query_heads=4, num_key_value_heads=2, **options)
    for kwargs in (
        {"use_causal_mask": True},
        {"attention_mask": mask},
        {"attention_mask": mask, "use_causal_mask": True},
        {"attention_mask": mask[:1, :, :]},  # broadcast over the batch
    ):
        got = ours(
            _t(QUERY), _t(VALUE), return_attention_scores=scores, **{k: _t(v) for k, v in kwargs.items()}
        )
        expected = theirs(QUERY, VALUE, return_attention_scores=scores, **kwargs)
        for a, b in zip(got if scores else [got], expected if scores else [expected]):
            np.testing.assert_allclose(_np(a), _np(b), **TOL)


def _masked_model(lib, gqa):
    q_in, v_in = lib.Input((5,), dtype="int32"), lib.Input((6,), dtype="int32")
    q = lib.layers.Embedding(10, 8, mask_zero=True)(q_in)
    v = lib.layers.Embedding(10, 8, mask_zero=True)(v_in)
    h = gqa(q, v)
    pooled = lib.layers.GlobalAveragePooling1D()(h)
    return lib.Model([q_in, v_in], [h, lib.layers.Dense(3)(pooled)])


@pytest.mark.parametrize("options", [{}, {"dropout": 0.3}])
def test_keras_masks_from_embeddings_match_keras(options):
    ours = _masked_model(tapefit, GroupQueryAttention(4, 4, 2, **options))
    theirs = _masked_model(keras, keras.layers.GroupQueryAttention(4, 4, 2, **options))
    ours.set_weights(theirs.get_weights())
    got = ours([_t(TOKENS_Q), _t(TOKENS_V)])
    expected = theirs([TOKENS_Q, TOKENS_V])
    for a, b in zip(got, expected):
        np.testing.assert_allclose(_np(a), _np(b), **TOL)
    np.testing.assert_array_equal(_np(got[0]._keras_mask), TOKENS_Q != 0)


def test_masked_inputs_neither_warn_nor_lose_their_mask():
    q = tapefit.layers.Embedding(10, 8, mask_zero=True)(_t(TOKENS_Q))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = GroupQueryAttention(4, 4, 2)(q, q)
    assert q._keras_mask is not None
    np.testing.assert_array_equal(_np(out._keras_mask), TOKENS_Q != 0)


def test_training_matches_keras_fit():
    ours = _masked_model(tapefit, GroupQueryAttention(4, 4, 2))
    theirs = _masked_model(keras, keras.layers.GroupQueryAttention(4, 4, 2))
    ours.set_weights(theirs.get_weights())
    x = [np.tile(TOKENS_Q, (4, 1)), np.tile(TOKENS_V, (4, 1))]
    y = [np.zeros((16, 5, 8), "float32"), np.arange(16) % 3]
    histories = []
    for model, lib in ((ours, tapefit), (theirs, keras)):
        model.compile(
            optimizer=lib.optimizers.SGD(0.1),
            loss=[None, lib.losses.SparseCategoricalCrossentropy(from_logits=True)],
        )
        histories.append(model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)


def test_dropout_is_identity_at_inference_and_acts_in_training():
    q, v = _t(QUERY), _t(VALUE)
    plain = GroupQueryAttention(4, 4, 2)
    reference = plain(q, v)
    for seed in (None, 3):
        layer = GroupQueryAttention(4, 4, 2, dropout=0.5, seed=seed)
        layer(q, v)
        layer.set_weights(plain.get_weights())
        torch.testing.assert_close(layer(q, v), reference)
        torch.testing.assert_close(layer(q, v, training=False), reference)
        assert not torch.allclose(layer(q, v, training=True), reference)
        out_t, scores_t = layer(q, v, return_attention_scores=True, training=True)
        torch.testing.assert_close(scores_t, plain(q, v, return_attention_scores=True)[1])


def test_grouped_heads_equal_repeated_key_value_heads():
    # One key/value head shared by 4 query heads equals 4 query heads with copies of that head.
    q = _t(QUERY)
    mqa = GroupQueryAttention(4, 4, 1)
    mqa(q, q)
    mha = GroupQueryAttention(4, 4, 4)
    mha(q, q)
    weights = mqa.get_weights()
    weights[2:6] = [np.repeat(w, 4, axis=-2) for w in weights[2:6]]
    mha.set_weights(weights)
    for kwargs in ({}, {"use_causal_mask": True}):
        torch.testing.assert_close(mqa(q, q, **kwargs), mha(q, q, **kwargs), rtol=1e-5, atol=1e-6)


def test_flash_attention_options_and_subclass_hook():
    q = _t(QUERY)
    ours = GroupQueryAttention(4, 4, 2)
    ref = ours(q, q, use_causal_mask=True)
    for flash in (True, False):
        other = GroupQueryAttention(4, 4, 2, flash_attention=flash)
        other(q, q)
        other.set_weights(ours.get_weights())
        torch.testing.assert_close(other(q, q, use_causal_mask=True), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="return_attention_scores=True needs the scores"):
        GroupQueryAttention(4, 4, 2, flash_attention=True)(q, q, return_attention_scores=True)

    class Hooked(GroupQueryAttention):
        """Keras's hook signature: scores come from self._return_attention_scores."""

        def _compute_attention(
            self, query, key, value, attention_mask=None, training=None, use_causal_mask=False
        ):
            assert key.shape[2] == query.shape[2]  # Keras repeats the key/value heads before the hook
            return super()._compute_attention(query, key, value, attention_mask, training, use_causal_mask)

    hooked = Hooked(4, 4, 2)
    hooked(q, q)
    hooked.set_weights(ours.get_weights())
    torch.testing.assert_close(hooked(q, q, use_causal_mask=True), ref, rtol=1e-5, atol=1e-6)
    out, scores = hooked(q, q, return_attention_scores=True)
    ref_out, ref_scores = ours(q, q, return_attention_scores=True)
    torch.testing.assert_close(scores, ref_scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)


def test_activity_regularizer_losses_match_keras():
    ours, theirs = _pair(
        QUERY, VALUE, head_dim=4, num_query_heads=4, num_key_value_heads=2, activity_regularizer="l2"
    )
    ours(_t(QUERY), _t(VALUE))
    theirs(QUERY, VALUE)
    np.testing.assert_allclose(
        sum(_np(x) for x in ours.losses), sum(_np(x) for x in theirs.losses), rtol=1e-5
    )


def test_config_round_trip_and_keras_keys():
    layer = GroupQueryAttention(4, 4, 2, dropout=0.1, use_gate=True, sliding_window=2, seed=2)
    again = GroupedQueryAttention.from_config(layer.get_config())
    q = _t(QUERY)
    layer(q, q)
    again(q, q)
    again.set_weights(layer.get_weights())
    torch.testing.assert_close(again(q, q), layer(q, q))
    assert set(layer.get_config()) == set(keras.layers.GroupQueryAttention(4, 4, 2).get_config()) - {"dtype"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_query_heads": 4, "num_key_value_heads": 3}, r"num_query_heads \(4\) must be divisible"),
        ({"num_query_heads": 0, "num_key_value_heads": 1}, "num_query_heads must be a positive integer"),
        ({"num_query_heads": 4, "num_key_value_heads": 2, "dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        (
            {"num_query_heads": 4, "num_key_value_heads": 2, "sliding_window": 0},
            "sliding_window must be None",
        ),
        (
            {"num_query_heads": 4, "num_key_value_heads": 2, "dropout": 0.1, "flash_attention": True},
            "dropout is not supported with flash_attention=True",
        ),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GroupQueryAttention(head_dim=4, **kwargs)
    if "divisible" in message:
        with pytest.raises(ValueError, match="must be divisible"):
            keras.layers.GroupQueryAttention(head_dim=4, **kwargs)


def test_mismatched_shapes_are_refused():
    layer = GroupQueryAttention(4, 4, 2)
    with pytest.raises(ValueError, match="value and key must have the same shape"):
        layer(_t(QUERY), _t(VALUE), torch.randn(3, 4, 7))
    with pytest.raises(ValueError, match="last dimension of query_shape and value_shape"):
        layer.compute_output_shape((3, 5, 8), (3, 6, 7))


def test_a_saved_model_loads_under_keras_s_name(tmp_path):
    inputs = tapefit.Input((5, 8))
    outputs = tapefit.layers.GroupQueryAttention(4, 4, 2)(inputs, inputs, use_causal_mask=True)
    model = tapefit.Model(inputs, outputs)
    assert model.get_config()["layers"][1]["class_name"] == "GroupQueryAttention"
    model.save(tmp_path / "gqa.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "gqa.tapefit")
    x = np.random.default_rng(9).standard_normal((2, 5, 8)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
