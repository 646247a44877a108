"""Keras masking: ``Embedding(mask_zero=True)`` and ``Masking`` make a mask, layers carry or use it,
losses and metrics skip masked timesteps. References: Keras 3 itself (torch backend), same weights."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers as L
from tests.keras_parity import keras

VOCAB, STEPS = 12, 6


def _padded_tokens(n: int = 10, seed: int = 0) -> np.ndarray:
    """Token rows of random lengths 1..STEPS, padded with 0 at the end."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (n, STEPS))
    for row, length in zip(x, rng.integers(1, STEPS + 1, n)):
        row[length:] = 0
    return x.astype("int64")


def _copy_weights(ours: tapefit.Model, theirs: keras.Model) -> None:
    theirs.set_weights(ours.get_weights())


def _tagger(lib, dtype: str = "int64"):
    """A sequence tagger: per-token class probabilities, padding masked by the embedding."""
    inp = lib.Input((STEPS,), dtype=dtype)
    h = lib.layers.Embedding(VOCAB, 5, mask_zero=True)(inp)
    h = lib.layers.Dense(8, activation="tanh")(h)
    out = lib.layers.Dense(3, activation="softmax")(h)
    return lib.Model(inp, out)


def _classifier(lib):
    """A text classifier: the mean over the kept tokens only."""
    return lib.Sequential(
        [
            lib.Input((STEPS,), dtype="int64"),
            lib.layers.Embedding(VOCAB, 4, mask_zero=True),
            lib.layers.Dense(6, activation="relu"),
            lib.layers.Dropout(0.5),
            lib.layers.GlobalAveragePooling1D(),
            lib.layers.Dense(2),
        ]
    )


def test_embedding_mask_zero_makes_keras_mask():
    x = _padded_tokens()
    ours = L.Embedding(VOCAB, 3, mask_zero=True)(torch.from_numpy(x))
    theirs = keras.layers.Embedding(VOCAB, 3, mask_zero=True)
    np.testing.assert_array_equal(
        ours._keras_mask.numpy(), keras.ops.convert_to_numpy(theirs.compute_mask(x))
    )


def test_embedding_without_mask_zero_attaches_nothing():
    y = L.Embedding(VOCAB, 3)(torch.from_numpy(_padded_tokens()))
    assert getattr(y, "_keras_mask", None) is None


def test_masked_average_classifier_matches_keras():
    x = _padded_tokens()
    ours, theirs = _classifier(tapefit), _classifier(keras)
    _copy_weights(ours, theirs)
    np.testing.assert_allclose(
        ours(torch.from_numpy(x)).detach().numpy(),
        keras.ops.convert_to_numpy(theirs(x)),
        rtol=1e-5,
        atol=1e-6,
    )
    # By hand: each row's pooled vector is the mean over its kept tokens only.
    tokens = torch.from_numpy(x)
    hidden = ours.layers[1](ours.layers[0](tokens))
    pooled = ours.layers[3](hidden)
    for row in range(len(x)):
        torch.testing.assert_close(pooled[row], hidden[row][tokens[row] != 0].mean(0))


def test_masked_loss_and_metrics_match_keras_evaluate():
    x = _padded_tokens(40, seed=1)
    y = np.random.default_rng(2).integers(0, 3, x.shape).astype("int64")
    ours, theirs = _tagger(tapefit), _tagger(keras)
    _copy_weights(ours, theirs)
    for m in (ours, theirs):
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    got = ours.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    want = theirs.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert got["accuracy"] == pytest.approx(want["accuracy"], rel=1e-6)
    # And the masked loss differs from an unmasked one: the mask is really used.
    plain = tapefit.Model.from_config(ours.get_config())
    plain.layers[1].mask_zero = False
    plain.layers[1]._produces_mask = False
    plain.set_weights(ours.get_weights())
    plain.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert plain.evaluate(x, y, verbose=0) != pytest.approx(got["loss"], rel=1e-3)


def test_masked_training_matches_keras_fit():
    x = _padded_tokens(32, seed=3)
    y = np.random.default_rng(4).integers(0, 3, x.shape).astype("int64")
    ours, theirs = _tagger(tapefit), _tagger(keras)
    _copy_weights(ours, theirs)
    for m, lib in ((ours, tapefit), (theirs, keras)):
        m.compile(
            optimizer=lib.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    h_ours = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    h_theirs = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(h_ours["loss"], h_theirs["loss"], rtol=1e-5)
    np.testing.assert_allclose(h_ours["accuracy"], h_theirs["accuracy"], rtol=1e-6)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)


def test_masking_layer_matches_keras_and_zeroes_masked_steps():
    x = np.random.default_rng(5).standard_normal((3, 5, 2)).astype("float32")
    x[0, 1] = 0.0
    x[2, 3:] = 0.0
    x[1, 0, 0] = 0.0  # one zero feature alone does not mask the step
    ours = L.Masking()(torch.from_numpy(x))
    theirs = keras.layers.Masking()(x)
    np.testing.assert_array_equal(ours.numpy(), keras.ops.convert_to_numpy(theirs))
    np.testing.assert_array_equal(ours._keras_mask.numpy(), keras.ops.convert_to_numpy(theirs._keras_mask))
    assert ours._keras_mask.tolist()[0] == [True, False, True, True, True]


def test_masked_rows_of_a_two_dimensional_output_do_not_count_in_the_loss():
    # Masking on (batch, features) masks whole rows: the fused cross-entropy must not skip the mask.
    x = np.random.default_rng(6).standard_normal((8, 4)).astype("float32")
    x[[1, 5]] = -1.0
    y = np.arange(8) % 3

    def build(lib):
        return lib.Sequential([lib.Input((4,)), lib.layers.Masking(-1.0), lib.layers.Dense(3)])

    ours, theirs = build(tapefit), build(keras)
    _copy_weights(ours, theirs)
    for m, lib in ((ours, tapefit), (theirs, keras)):
        m.compile(loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    got, accuracy = ours.evaluate(x, y, verbose=0)
    assert [got, accuracy] == pytest.approx(theirs.evaluate(x, y, verbose=0), rel=1e-6)
    kept = np.ones(8, bool)
    kept[[1, 5]] = False
    logits = ours(torch.from_numpy(x)).detach()
    by_hand = torch.nn.functional.cross_entropy(logits[kept], torch.from_numpy(y[kept]))
    assert got == pytest.approx(by_hand.item(), rel=1e-6)


def test_batch_normalization_uses_only_unmasked_steps_in_training():
    x = np.random.default_rng(7).standard_normal((4, 5, 3)).astype("float32") * 3 + 1
    mask = np.random.default_rng(8).random((4, 5)) > 0.4
    ours, theirs = L.BatchNormalization(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    ours.build((None, 5, 3))
    theirs.build((None, 5, 3))
    out_ours = ours(torch.from_numpy(x), training=True, mask=torch.from_numpy(mask))
    out_theirs = theirs(x, training=True, mask=mask)
    np.testing.assert_allclose(
        out_ours.detach().numpy(), keras.ops.convert_to_numpy(out_theirs), rtol=1e-4, atol=1e-5
    )
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one dimension less"):
        ours(torch.from_numpy(x), training=True, mask=torch.ones(4, 5, 3, dtype=torch.bool))


def test_batch_normalization_picks_up_the_mask_from_its_input():
    x = torch.from_numpy(_padded_tokens())
    emb = L.Embedding(VOCAB, 3, mask_zero=True)
    bn = L.BatchNormalization()
    h = emb(x)
    bn(h, training=True)
    explicit = L.BatchNormalization()
    explicit(h.detach().clone(), training=True, mask=h._keras_mask)
    torch.testing.assert_close(bn.moving_mean, explicit.moving_mean)
    torch.testing.assert_close(bn.moving_variance, explicit.moving_variance)


def _masked(t: np.ndarray, m: np.ndarray) -> torch.Tensor:
    out = torch.from_numpy(t)
    out._keras_mask = torch.from_numpy(m)
    return out


@pytest.mark.parametrize("name", ["Add", "Multiply", "Average", "Maximum"])
def test_elementwise_merges_combine_masks_as_keras(name):
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((2, 2, 4, 3)).astype("float32")
    ma, mb = rng.random((2, 2, 4)) > 0.5
    out = getattr(L, name)()([_masked(a, ma), _masked(b, mb)])
    want = getattr(keras.layers, name)().compute_mask([a, b], [ma, mb])
    np.testing.assert_array_equal(out._keras_mask.numpy(), keras.ops.convert_to_numpy(want))
    half = getattr(L, name)()([_masked(a, ma), torch.from_numpy(b)])
    assert getattr(half, "_keras_mask", None) is None  # an unmasked input unmasks the output


@pytest.mark.parametrize("axis", [-1, 1])
def test_concatenate_joins_masks_as_keras(axis):
    rng = np.random.default_rng(10)
    a = rng.standard_normal((2, 4, 3)).astype("float32")
    b = rng.standard_normal((2, 4, 3)).astype("float32")
    ma = rng.random((2, 4)) > 0.5
    out = L.Concatenate(axis=axis)([_masked(a, ma), torch.from_numpy(b)])
    want = keras.layers.Concatenate(axis=axis).compute_mask([a, b], [ma, None])
    np.testing.assert_array_equal(out._keras_mask.numpy(), keras.ops.convert_to_numpy(want))


def test_dot_and_pooling_end_the_mask():
    h = L.Embedding(VOCAB, 3, mask_zero=True)(torch.from_numpy(_padded_tokens()))
    assert getattr(L.GlobalAveragePooling1D()(h), "_keras_mask", None) is None
    assert getattr(L.Dot(axes=2)([h, h]), "_keras_mask", None) is None


def test_global_average_pooling_ignores_what_padding_holds():
    x = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    poisoned = x.clone()
    poisoned[~mask] = float("nan")
    got = L.GlobalAveragePooling1D()(poisoned, mask=mask)
    torch.testing.assert_close(got, L.GlobalAveragePooling1D()(x, mask=mask))
    torch.testing.assert_close(got[1], x[1, 0])


def test_a_layer_without_mask_support_warns_and_drops_the_mask():
    h = L.Embedding(VOCAB, 3, mask_zero=True)(torch.from_numpy(_padded_tokens()))
    with pytest.warns(UserWarning, match=r"'conv'.*does not support masking"):
        out = L.Conv1D(2, 1, name="conv")(h)
    assert getattr(out, "_keras_mask", None) is None


def test_custom_layers_opt_in_to_masking_as_in_keras():
    class Scale(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs):
            return inputs * 2

    class SeesMask(L.Layer):
        def call(self, inputs, mask=None):
            self.seen = mask
            return inputs

    h = L.Embedding(VOCAB, 3, mask_zero=True)(torch.from_numpy(_padded_tokens()))
    scaled = Scale()(h)
    assert torch.equal(scaled._keras_mask, h._keras_mask)
    sees = SeesMask()
    with pytest.warns(UserWarning, match="does not support masking"):
        sees(scaled)
    assert torch.equal(sees.seen, h._keras_mask)  # ``call(mask=)`` gets the input's mask


def test_lambda_mask_function_and_its_config():
    @tapefit.saving.register_serializable(package="test_masking")
    def keep_positive(inputs, mask=None):
        return inputs[..., 0] > 0

    layer = L.Lambda("linear", mask=keep_positive)
    x = torch.tensor([[[1.0], [-1.0], [2.0]]])
    assert layer(x)._keras_mask.tolist() == [[True, False, True]]
    clone = L.Lambda.from_config(layer.get_config())
    assert clone.mask is keep_positive
    assert clone(x.clone())._keras_mask.tolist() == [[True, False, True]]  # a fresh input: no mask yet
    fixed = L.Lambda("linear", mask=torch.tensor([[True, True, False]]), name="fixed")
    with pytest.raises(ValueError, match="'fixed' cannot be saved by config: its mask is a fixed tensor"):
        fixed.get_config()


def test_lambda_function_gets_the_mask_when_it_asks():
    seen = {}

    def fn(x, mask=None):
        seen["mask"] = mask
        return x

    h = L.Embedding(VOCAB, 3, mask_zero=True)(torch.from_numpy(_padded_tokens()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Lambda(fn)(h)
    assert torch.equal(seen["mask"], h._keras_mask)


def test_models_take_a_mask_argument():
    x = torch.randn(3, 4, 2)
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    inp = tapefit.Input((4, 2))
    functional = tapefit.Model(inp, L.Dense(3)(inp))
    sequential = tapefit.Sequential([tapefit.Input((4, 2)), L.Dense(3)])
    for model in (functional, sequential):
        out = model(x.clone(), mask=mask)
        assert torch.equal(out._keras_mask, mask)
    tokens = tapefit.Input((4,), dtype="int64")
    identity = tapefit.Model(tokens, L.Identity()(tokens))
    out = identity(torch.ones(3, 4, dtype=torch.int32), mask=mask)  # cast to the Input's int64
    assert out.dtype == torch.int64
    assert torch.equal(out._keras_mask, mask)


def test_the_mask_survives_mixed_precision():
    tapefit.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        inp = tapefit.Input((STEPS,), dtype="int64")
        logits = L.Dense(3)(L.Embedding(VOCAB, 5, mask_zero=True)(inp))  # computed in bfloat16
        model = tapefit.Model(inp, logits)
    finally:
        tapefit.mixed_precision.set_global_policy("float32")
    out = model(torch.from_numpy(_padded_tokens()))
    assert out.dtype == torch.float32  # cast back by the model, keeping the mask
    assert torch.equal(out._keras_mask, torch.from_numpy(_padded_tokens() != 0))


def test_saved_models_keep_their_masks(tmp_path):
    x = _padded_tokens()
    model = _classifier(tapefit)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "m.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "m.tapefit")
    assert loaded.layers[0].mask_zero is True
    torch.testing.assert_close(loaded(torch.from_numpy(x)), model(torch.from_numpy(x)))
    masking = tapefit.Sequential([tapefit.Input((3, 2)), L.Masking(mask_value=-1.0)])
    clone = tapefit.Sequential.from_config(masking.get_config())
    assert clone.layers[0].mask_value == -1.0


def test_compiled_masked_step_matches_eager():
    x = _padded_tokens(16, seed=11)
    y = np.random.default_rng(12).integers(0, 3, x.shape).astype("int64")
    eager, compiled = _tagger(tapefit), _tagger(tapefit)
    compiled.set_weights(eager.get_weights())
    for model, jit in ((eager, False), (compiled, True)):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", jit_compile=jit)
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(eager.get_weights(), compiled.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_casting_outputs_back_to_float32_keeps_their_mask():
    out = torch.ones(2, 3, dtype=torch.bfloat16)
    out._keras_mask = torch.tensor([[True, False, True], [False, True, True]])
    cast = tapefit.mixed_precision.policy.outputs_to_float32([out])[0]
    assert cast.dtype == torch.float32
    assert cast._keras_mask is out._keras_mask


class _TokenEmbedding(L.Layer):
    """Keras's TokenAndPositionEmbedding shape: a sub-layer, and a mask of its own from the ids."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tokens = L.Embedding(VOCAB, 3)

    def call(self, x):
        return self.tokens(x)

    def compute_mask(self, inputs, previous_mask=None):
        return inputs != 0


def test_a_custom_compute_mask_creates_the_mask():
    x = torch.from_numpy(_padded_tokens())
    np.testing.assert_array_equal(_TokenEmbedding()(x)._keras_mask.numpy(), _padded_tokens() != 0)


@pytest.mark.parametrize("name", ["Multiply", "Maximum", "Minimum", "Add", "Average", "Subtract"])
@pytest.mark.parametrize("both", [True, False])
def test_merged_values_of_masked_inputs_match_keras(name, both):
    rng = np.random.default_rng(13)
    a, b = rng.standard_normal((2, 3, 5, 4)).astype("float32")
    ma, mb = rng.random((2, 3, 5)) > 0.4

    def inputs():
        return [_masked(a, ma), _masked(b, mb) if both else torch.from_numpy(b)]

    ours = getattr(L, name)()(inputs())
    theirs = getattr(keras.layers, name)()(inputs())
    np.testing.assert_allclose(ours.numpy(), keras.ops.convert_to_numpy(theirs), rtol=1e-6)
    want_mask = getattr(theirs, "_keras_mask", None)
    if want_mask is None:
        assert getattr(ours, "_keras_mask", None) is None
    else:
        np.testing.assert_array_equal(ours._keras_mask.numpy(), keras.ops.convert_to_numpy(want_mask))


def test_masks_survive_the_input_cast_into_nested_layers():
    class Block(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.pool = L.GlobalAveragePooling1D()

        def call(self, x):
            return self.pool(x)

    x = torch.randn(2, 4, 3, dtype=torch.float64)  # cast to float32 on the way in
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    x._keras_mask = mask
    with pytest.warns(UserWarning, match="'block' .*does not support masking"):  # as Keras warns
        got = Block(name="block")(x)
    torch.testing.assert_close(got, L.GlobalAveragePooling1D()(x.float(), mask=mask))


def test_numpy_inputs_and_masks_are_converted_first():
    x = _padded_tokens()
    out = L.Embedding(VOCAB, 3, mask_zero=True)(x)
    np.testing.assert_array_equal(out._keras_mask.numpy(), x != 0)
    masked = L.Lambda("linear", mask=lambda t, m: t[..., 0] != 0)(np.ones((2, 3, 1), "float32"))
    assert isinstance(masked._keras_mask, torch.Tensor)
    model = tapefit.Sequential([tapefit.Input((4, 2)), L.Dense(3), L.GlobalAveragePooling1D()])
    keep = np.array([[True, True, False, False]] * 2)
    features = np.random.default_rng(14).standard_normal((2, 4, 2)).astype("float32")
    pooled = model(features, mask=keep)
    hidden = model.layers[0](torch.from_numpy(features))
    torch.testing.assert_close(pooled, hidden[:, :2].mean(1))


def test_an_explicit_mask_argument_is_the_outputs_mask_as_in_keras():
    x = np.random.default_rng(15).standard_normal((2, 3)).astype("float32")
    mask = np.array([[True, False, True], [True, True, False]])
    ours = L.Softmax()(torch.from_numpy(x), mask=torch.from_numpy(mask))
    theirs = keras.layers.Softmax()(x, mask=mask)
    np.testing.assert_array_equal(ours._keras_mask.numpy(), keras.ops.convert_to_numpy(theirs._keras_mask))


def test_tensor_arithmetic_drops_the_mask_silently_as_keras_ops_do():
    inp = tapefit.Input((STEPS,), dtype="int64")
    doubled = L.Embedding(VOCAB, 3, mask_zero=True)(inp) * 2.0
    model = tapefit.Model(inp, doubled)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model(torch.from_numpy(_padded_tokens()))
    assert getattr(out, "_keras_mask", None) is None


def test_unmasked_calls_skip_the_masking_path(monkeypatch):
    calls = []
    original = L.Layer._masked_call
    monkeypatch.setattr(
        L.Layer, "_masked_call", lambda self, *a: calls.append(self.name) or original(self, *a)
    )
    model = tapefit.Sequential(
        [
            tapefit.Input((4, 3)),
            L.Dense(5),
            L.Dropout(0.1),
            L.BatchNormalization(),
            L.GlobalAveragePooling1D(),
        ]
    )
    inp = tapefit.Input((3,))
    merged = tapefit.Model(inp, L.Concatenate()([L.Add()([inp, inp]), L.Softmax()(inp)]))
    model(torch.randn(2, 4, 3), training=True)
    merged(torch.randn(2, 3))
    assert calls == []
    L.Embedding(VOCAB, 3, mask_zero=True)(torch.from_numpy(_padded_tokens()))
    assert len(calls) == 1


@pytest.mark.parametrize("lib", [tapefit, keras], ids=["tapefit", "keras"])
def test_several_tensor_arguments_get_their_own_masks(lib):
    class Attend(lib.layers.Layer):
        def call(self, query, value, query_mask=None, value_mask=None, mask=None):
            self.seen = (query_mask, value_mask, mask)
            return query

    query = _masked(np.ones((1, 3, 2), "float32"), np.array([[True, True, False]]))
    value = _masked(np.ones((1, 3, 2), "float32"), np.array([[True, False, False]]))
    layer = Attend()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Attend does not support masking: its output loses the mask
        layer(query, value)
    query_mask, value_mask, mask = layer.seen
    assert torch.equal(query_mask, query._keras_mask)
    assert torch.equal(value_mask, value._keras_mask)
    assert mask is None  # ``mask`` is filled only when call gets a single tensor argument


def test_plain_keyword_arguments_stay_numbers_when_the_input_is_masked():
    class Stretch(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, x, factor=2.0):
            self.factor = factor
            return x * factor

    h = L.Embedding(VOCAB, 2, mask_zero=True)(torch.from_numpy(_padded_tokens()))
    layer = Stretch()
    layer(h, factor=3.0)
    assert layer.factor == 3.0 and not isinstance(layer.factor, torch.Tensor)
