"""``Attention`` and ``AdditiveAttention``: outputs, attention scores, masks, dropout, config, errors
and training, against Keras 3 (torch backend) with the same weights, and by hand where Keras cannot
say (dropout draws, float16 rows with nothing to attend to)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tapefit
from tapefit.layers.attention.attention import AdditiveAttention, Attention
from tests.keras_parity import assert_config_round_trip, keras

B, TQ, TV, DIM, VOCAB = 3, 4, 5, 6, 11

CONFIGS = [
    ("Attention", {}),
    ("Attention", {"use_scale": True}),
    ("Attention", {"score_mode": "concat"}),
    ("Attention", {"use_scale": True, "score_mode": "concat"}),
    ("AdditiveAttention", {}),
    ("AdditiveAttention", {"use_scale": False}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for name, kw in CONFIGS]


def _ours(name: str, **kw):
    return {"Attention": Attention, "AdditiveAttention": AdditiveAttention}[name](**kw)


def _data(seed: int = 0, dtype: str = "float32"):
    rng = np.random.default_rng(seed)
    q, v, k = (rng.standard_normal((B, t, DIM)).astype(dtype) for t in (TQ, TV, TV))
    q_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
    v_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 0, 1, 0]], bool)
    return q, v, k, q_mask, v_mask


def _pair(name: str, inputs: list[np.ndarray], seed: int = 1, **kw):
    """Our layer and Keras's, built on ``inputs``, both holding the same random (not initial) weights."""
    ours, theirs = _ours(name, **kw), getattr(keras.layers, name)(**kw)
    ours([torch.from_numpy(x) for x in inputs])
    theirs(inputs)
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(0.4, 1.6, np.shape(w)).astype("float32") for w in theirs.get_weights()]
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().float().numpy()
    return keras.ops.convert_to_numpy(x).astype("float32")


def _t(xs):
    return [None if x is None else torch.from_numpy(x) for x in xs]


@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
@pytest.mark.parametrize("causal", [False, True], ids=["plain", "causal"])
@pytest.mark.parametrize("with_key", [False, True], ids=["qv", "qvk"])
@pytest.mark.parametrize("masks", ["none", "both", "query", "value"])
def test_outputs_and_scores_match_keras(name, kw, causal, with_key, masks):
    q, v, k, q_mask, v_mask = _data()
    inputs = [q, v, k] if with_key else [q, v]
    ours, theirs = _pair(name, inputs, **kw)
    mask = {"none": None, "both": [q_mask, v_mask], "query": [q_mask, None], "value": [None, v_mask]}[masks]
    call = dict(return_attention_scores=True, use_causal_mask=causal)
    got = ours(_t(inputs), mask=None if mask is None else _t(mask), **call)
    want = theirs(inputs, mask=mask, **call)
    for a, b in zip(got, want):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)
    # The output's mask is the query's (Keras's compute_mask), absent without one.
    keras_mask = getattr(want[0], "_keras_mask", None)
    ours_mask = getattr(got[0], "_keras_mask", None)
    assert (ours_mask is None) == (keras_mask is None) == (masks in ("none", "value"))
    if keras_mask is not None:
        np.testing.assert_array_equal(ours_mask.numpy(), _np(keras_mask).astype(bool))


def test_masks_really_change_the_result():
    q, v, _, q_mask, v_mask = _data()
    layer = Attention()
    out, scores = layer(_t([q, v]), mask=_t([q_mask, v_mask]), return_attention_scores=True)
    assert (scores.detach().numpy()[~np.broadcast_to(v_mask[:, None, :], scores.shape)] < 1e-6).all()
    assert (out.detach().numpy()[~q_mask] == 0).all()
    _, causal = layer(_t([q, v]), use_causal_mask=True, return_attention_scores=True)
    causal = causal.detach().numpy()
    assert (np.triu(causal, 1) == 0).all()
    np.testing.assert_allclose(causal.sum(-1), 1.0, rtol=1e-6)


def _embedded(lib, name: str, causal: bool, **kw):
    """Queries and values from an ``Embedding(mask_zero=True)``: masks come from the padding."""
    q_in, v_in = lib.Input((TQ,), dtype="int64"), lib.Input((TV,), dtype="int64")
    emb = lib.layers.Embedding(VOCAB, DIM, mask_zero=True)
    layer = _ours(name, **kw) if lib is tapefit else getattr(keras.layers, name)(**kw)
    out, scores = layer([emb(q_in), emb(v_in)], return_attention_scores=True, use_causal_mask=causal)
    return lib.Model([q_in, v_in], [out, scores])


def _tokens(seed: int = 3):
    rng = np.random.default_rng(seed)
    q, v = rng.integers(1, VOCAB, (B, TQ)), rng.integers(1, VOCAB, (B, TV))
    q[1, 2:], q[2, 1:] = 0, 0
    v[0, 3:], v[2, [0, 2]] = 0, 0
    return q.astype("int64"), v.astype("int64")


@pytest.mark.parametrize("name,kw", [CONFIGS[3], CONFIGS[4]], ids=[IDS[3], IDS[4]])
@pytest.mark.parametrize("causal", [False, True], ids=["plain", "causal"])
def test_masks_from_an_embedding_in_a_functional_model_match_keras(name, kw, causal):
    ours, theirs = _embedded(tapefit, name, causal, **kw), _embedded(keras, name, causal, **kw)
    theirs.set_weights(ours.get_weights())
    q, v = _tokens()
    got, want = ours(_t([q, v])), theirs([q, v])
    for a, b in zip(got, want):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[0]._keras_mask.numpy(), q != 0)
    np.testing.assert_array_equal(got[0]._keras_mask.numpy(), _np(want[0]._keras_mask).astype(bool))
    assert getattr(got[1], "_keras_mask", None) is None and getattr(want[1], "_keras_mask", None) is None
    if not causal:  # (causally, a query step whose only visible values are padding attends to all)
        assert (got[1].detach().numpy()[np.broadcast_to((v == 0)[:, None, :], got[1].shape)] < 1e-6).all()


def test_compute_output_shape_and_mask_match_keras():
    shapes = [(None, TQ, DIM), (None, TV, DIM + 2)]
    assert Attention().compute_output_shape(shapes) == keras.layers.Attention().compute_output_shape(shapes)
    assert Attention().compute_output_shape(shapes) == (None, TQ, DIM + 2)
    q, v, _, q_mask, v_mask = _data()
    mask = Attention().compute_mask(_t([q, v]), _t([q_mask, v_mask]))
    np.testing.assert_array_equal(mask.numpy(), q_mask)
    assert Attention().compute_mask(_t([q, v]), [None, torch.from_numpy(v_mask)]) is None
    assert Attention().compute_mask(_t([q, v]), None) is None


def test_weights_names_shapes_and_initial_values_match_keras():
    q, v, *_ = _data()
    for name, kw in CONFIGS:
        ours, theirs = _ours(name, **kw), getattr(keras.layers, name)(**kw)
        ours(_t([q, v]))
        theirs([q, v])
        assert [w.path.split("/")[-1] for w in ours.weights] == [
            w.path.split("/")[-1] for w in theirs.weights
        ]
        assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    ones = Attention(use_scale=True, score_mode="concat")
    ones(_t([q, v]))
    assert all((w == 1).all() for w in ones.get_weights())
    additive = AdditiveAttention()
    additive(_t([q, v]))
    (scale,) = additive.get_weights()
    limit = np.sqrt(6.0 / (2 * DIM))  # glorot_uniform of a vector: fan_in = fan_out = DIM
    assert scale.shape == (DIM,) and (np.abs(scale) <= limit).all() and len(np.unique(scale)) == DIM


def test_dropout_is_identity_in_inference_and_drops_weights_in_training():
    q, v, _, _, v_mask = _data()
    rate = 0.4
    plain, dropping = Attention(), Attention(dropout=rate, seed=7)
    reference, ref_scores = plain(_t([q, v]), return_attention_scores=True)
    out, scores = dropping(_t([q, v]), return_attention_scores=True, training=False)
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(scores, ref_scores)
    out, scores = dropping(_t([q, v]), return_attention_scores=True, training=True)
    kept = scores != 0
    torch.testing.assert_close(scores[kept], ref_scores[kept] / (1 - rate))
    torch.testing.assert_close(out, scores @ torch.from_numpy(v))  # dropout on the weights, not the output
    # The same seed gives the same draws; the drop rate is ``rate`` over many weights.
    again = Attention(dropout=rate, seed=7)(_t([q, v]), return_attention_scores=True, training=True)[1]
    torch.testing.assert_close(again, scores)
    big = [torch.randn(8, 64, 4), torch.randn(8, 96, 4)]
    _, many = Attention(dropout=rate, seed=3)(big, return_attention_scores=True, training=True)
    assert abs((many == 0).float().mean().item() - rate) < 0.02


def test_dropout_follows_the_training_flag_inside_a_model():
    inp = tapefit.Input((TQ, DIM))
    model = tapefit.Model(inp, Attention(dropout=0.5, seed=1)([inp, inp]))
    x = torch.from_numpy(_data()[0])
    torch.testing.assert_close(model(x), model(x))
    assert not torch.allclose(model(x, training=True), model(x))


def test_float16_masking_matches_keras_and_keeps_fully_masked_rows_finite():
    q, v, _, _, v_mask = _data(dtype="float16")
    ours, theirs = Attention(dtype="float16"), keras.layers.Attention(dtype="float16")
    out, scores = ours(_t([q, v]), mask=[None, torch.from_numpy(v_mask)], return_attention_scores=True)
    want, want_scores = theirs([q, v], mask=[None, v_mask], return_attention_scores=True)
    assert out.dtype == torch.float16
    np.testing.assert_allclose(_np(out), _np(want), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(_np(scores), _np(want_scores), rtol=2e-3, atol=2e-3)
    # Keras subtracts 65504 (float16's largest) rather than 1e9, which would overflow to -inf: a
    # row with every value masked then attends uniformly (a NaN with -inf everywhere).
    nothing = np.zeros_like(v_mask)
    out = ours(_t([q, v]), mask=[None, torch.from_numpy(nothing)])
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(
        _np(out), np.broadcast_to(v.astype("float32").mean(1, keepdims=True), out.shape), atol=2e-3
    )


@pytest.mark.parametrize(
    "name,kw", CONFIGS + [("Attention", {"dropout": 0.2, "seed": 4})], ids=IDS + ["dropout"]
)
def test_config_round_trip_and_keras_keys(name, kw):
    ours, theirs = _ours(name, **kw), getattr(keras.layers, name)(**kw)
    assert_config_round_trip(ours)
    from_json = type(ours).from_config(json.loads(json.dumps(ours.get_config())))
    assert from_json.get_config() == ours.get_config()
    assert set(ours.get_config()) == set(theirs.get_config()) - {"dtype"}
    for key in ("use_scale", "score_mode", "dropout", "seed"):
        assert ours.get_config().get(key) == theirs.get_config().get(key), key
    assert ("score_mode" in ours.get_config()) == (name == "Attention")


@pytest.mark.parametrize(
    "inputs,mask,match",
    [
        ("tuple", None, "must be called on a list of inputs"),
        ("tensor", None, "must be called on a list of inputs"),
        ("one", None, "inputs list of length 2 or 3"),
        ("four", None, "inputs list of length 2 or 3"),
        ("two", "tuple", "mask must be a list"),
        ("two", "one", "mask list of length 2 or 3"),
    ],
)
def test_bad_inputs_and_masks_raise_as_in_keras(inputs, mask, match):
    q, v, k, q_mask, v_mask = _data()
    given = {"tuple": (q, v), "tensor": q, "one": [q], "four": [q, v, k, v], "two": [q, v]}[inputs]
    masks = {None: None, "tuple": (q_mask, v_mask), "one": [q_mask]}[mask]

    def torch_of(x):
        if isinstance(x, (list, tuple)):
            return type(x)(torch.from_numpy(a) for a in x)
        return None if x is None else torch.from_numpy(x)

    with pytest.raises(ValueError, match=match):
        Attention()(torch_of(given), mask=torch_of(masks))
    with pytest.raises(ValueError):
        keras.layers.Attention()(given, mask=masks)


def test_bad_constructor_arguments_raise():
    with pytest.raises(ValueError, match="score_mode must be one of"):
        Attention(score_mode="additive")
    with pytest.raises(ValueError, match="dropout must be a number between 0 and 1"):
        AdditiveAttention(dropout=1.5)
    inp = tapefit.Input((TQ, DIM))
    with pytest.raises(ValueError, match="must be called on a list of inputs"):
        Attention()((inp, inp))


def _seq_model(lib):
    """Tokens -> embedding (mask) -> causal self-attention -> additive cross-attention with a key
    -> masked mean -> classes: every weight of both layers is on the loss's path."""
    inp = lib.Input((TQ,), dtype="int64")
    h = lib.layers.Embedding(VOCAB, DIM, mask_zero=True)(inp)
    key = lib.layers.Dense(DIM)(h)
    att = Attention if lib is tapefit else keras.layers.Attention
    add = AdditiveAttention if lib is tapefit else keras.layers.AdditiveAttention
    h = att(use_scale=True, score_mode="concat")([h, h], use_causal_mask=True)
    h = add()([h, h, key])
    h = lib.layers.GlobalAveragePooling1D()(h)
    return lib.Model(inp, lib.layers.Dense(3, activation="softmax")(h))


def test_training_in_a_functional_model_matches_keras_fit():
    rng = np.random.default_rng(5)
    x = rng.integers(1, VOCAB, (24, TQ)).astype("int64")
    for row, length in zip(x, rng.integers(1, TQ + 1, 24)):
        row[length:] = 0
    y = rng.integers(0, 3, 24).astype("int64")
    ours, theirs = _seq_model(tapefit), _seq_model(keras)
    theirs.set_weights(ours.get_weights())
    before = ours.get_weights()
    for m, lib in ((ours, tapefit), (theirs, keras)):
        m.compile(optimizer=lib.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    h_ours = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    h_theirs = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(h_ours["loss"], h_theirs["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)
    attention_weights = [
        w for layer in ours.layers if isinstance(layer, Attention) for w in layer.get_weights()
    ]
    assert len(attention_weights) == 3
    moved = [not np.allclose(a, b) for a, b in zip(ours.get_weights(), before)]
    assert all(moved)


def test_a_saved_model_loads_with_the_same_predictions(tmp_path):
    model = _seq_model(tapefit)
    x = np.random.default_rng(6).integers(0, VOCAB, (8, TQ)).astype("int64")
    model.save(tmp_path / "attention.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "attention.tapefit")
    assert [type(layer).__name__ for layer in loaded.layers] == [
        type(layer).__name__ for layer in model.layers
    ]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
