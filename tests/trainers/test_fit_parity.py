"""fit/evaluate/predict against Keras 3 (torch backend): same weights, same unshuffled batches,
same optimizer and loss -> same History and final weights."""

import numpy as np
import pytest

import tapefit
from tapefit import layers
from tests.keras_parity import keras


def _pair(activation="relu", out_units=3, out_activation=None):
    ours = tapefit.Sequential(
        [
            tapefit.Input((5,)),
            layers.Dense(7, activation=activation),
            layers.Dense(out_units, activation=out_activation),
        ]
    )
    theirs = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(7, activation=activation),
            keras.layers.Dense(out_units, activation=out_activation),
        ]
    )
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def _data(n=50, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype("float32"), rng.integers(0, classes, n)


CASES = [
    ("sgd", "sparse_categorical_crossentropy", "softmax", ["accuracy"]),
    ("adam", "sparse_categorical_crossentropy", "softmax", ["accuracy"]),
    ("rmsprop", "sparse_categorical_crossentropy", "softmax", ["sparse_categorical_accuracy"]),
    ("adagrad", "sparse_categorical_crossentropy", "softmax", ["accuracy"]),
    ("adamw", "categorical_crossentropy", "softmax", ["categorical_accuracy"]),
    ("adamax", "kl_divergence", "softmax", ["mae"]),
    ("nadam", "categorical_hinge", None, ["accuracy"]),
    ("adadelta", "mean_squared_error", None, ["mse"]),
    ("lion", "huber", None, ["mae"]),
    ("sgd", "log_cosh", None, ["mae"]),
    ("adam", "poisson", "softplus", ["mse"]),
    ("rmsprop", "cosine_similarity", None, ["mae"]),
    ("adam", "mean_absolute_percentage_error", "softplus", ["mse"]),
]

_SPARSE = ("sparse_categorical_crossentropy",)


@pytest.mark.parametrize("opt,loss,out_act,metrics", CASES)
def test_history_and_weights_match_keras(opt, loss, out_act, metrics):
    ours, theirs = _pair(out_activation=out_act)
    x, y = _data()
    if loss not in _SPARSE:
        y = np.eye(3, dtype="float32")[y]  # one-hot targets for the dense losses
    ours.compile(optimizer=opt, loss=loss, metrics=metrics)
    theirs.compile(optimizer=opt, loss=loss, metrics=metrics)
    h1 = ours.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_split=0.2)
    h2 = theirs.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_split=0.2)
    assert set(h1.history) == set(h2.history)
    for k in h2.history:
        np.testing.assert_allclose(h1.history[k], h2.history[k], rtol=1e-4, atol=1e-5, err_msg=k)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)


def test_sgd_momentum_mse_with_sample_weight_matches_keras():
    ours, theirs = _pair(activation="tanh", out_units=2)
    x, _ = _data(40)
    y = np.random.default_rng(2).standard_normal((40, 2)).astype("float32")
    sw = np.random.default_rng(3).uniform(0, 2, 40).astype("float32")
    for m in (ours, theirs):
        opt = (tapefit if m is ours else keras).optimizers.SGD(0.05, momentum=0.9, nesterov=True)
        m.compile(optimizer=opt, loss="mse", metrics=["mae"], weighted_metrics=["mse"])
    h1 = ours.fit(x, y, sample_weight=sw, batch_size=12, epochs=2, shuffle=False, verbose=0)
    h2 = theirs.fit(x, y, sample_weight=sw, batch_size=12, epochs=2, shuffle=False, verbose=0)
    for k in h2.history:
        np.testing.assert_allclose(h1.history[k], h2.history[k], rtol=1e-4, atol=1e-6, err_msg=k)
    e1 = ours.evaluate(x, y, sample_weight=sw, batch_size=7, verbose=0, return_dict=True)
    e2 = theirs.evaluate(x, y, sample_weight=sw, batch_size=7, verbose=0, return_dict=True)
    for k in e2:
        assert e1[k] == pytest.approx(e2[k], rel=1e-4, abs=1e-6), k


def test_class_weight_and_binary_accuracy_match_keras():
    ours, theirs = _pair(out_units=1, out_activation="sigmoid")
    x, y = _data(48, classes=2)
    for m in (ours, theirs):
        m.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    cw = {0: 0.5, 1: 2.0}
    h1 = ours.fit(x, y.astype("float32"), class_weight=cw, batch_size=10, epochs=2, shuffle=False, verbose=0)
    h2 = theirs.fit(
        x, y.astype("float32"), class_weight=cw, batch_size=10, epochs=2, shuffle=False, verbose=0
    )
    for k in h2.history:
        np.testing.assert_allclose(h1.history[k], h2.history[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_evaluate_returns_keras_shapes_and_predict_numpy():
    ours, theirs = _pair(out_activation="softmax")
    x, y = _data(30)
    for m in (ours, theirs):
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    r1, r2 = ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0)
    assert isinstance(r1, list) and len(r1) == len(r2) == 2
    np.testing.assert_allclose(r1, r2, rtol=1e-5)
    p = ours.predict(x, batch_size=8, verbose=0)
    assert isinstance(p, np.ndarray) and p.shape == (30, 3)
    np.testing.assert_allclose(p, theirs.predict(x, batch_size=8, verbose=0), atol=1e-6)
    loss_only = tapefit.Sequential([tapefit.Input((5,)), layers.Dense(1)])
    loss_only.compile(optimizer="sgd", loss="mse")
    assert isinstance(loss_only.evaluate(x, np.zeros((30, 1)), verbose=0), float)


def test_train_and_test_on_batch_match_keras():
    ours, theirs = _pair(out_activation="softmax")
    x, y = _data(16)
    for m in (ours, theirs):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for _ in range(3):
        a, b = ours.train_on_batch(x, y), theirs.train_on_batch(x, y)
        np.testing.assert_allclose(a, b, rtol=1e-4)
    np.testing.assert_allclose(ours.test_on_batch(x, y), theirs.test_on_batch(x, y), rtol=1e-4)
    np.testing.assert_allclose(ours.predict_on_batch(x), theirs.predict_on_batch(x), atol=1e-5)


def _evaluation_pair(kind):
    """A model in both libraries whose evaluation, with batches of 7 over 100 rows (the last of 2),
    updates its metrics per chunk of batches in tapefit, except where Keras's numbers need per-batch
    updates (one value per batch on 1-D outputs)."""
    if kind == "1d":
        ours = tapefit.Sequential([tapefit.Input((5,)), layers.Dense(1), layers.Lambda(lambda t: t[:, 0])])
        theirs = keras.Sequential(
            [keras.Input((5,)), keras.layers.Dense(1), keras.layers.Lambda(lambda t: t[:, 0])]
        )
    else:
        ours, theirs = _pair(
            out_units=1 if kind == "binary" else 3, out_activation="sigmoid" if kind == "binary" else None
        )
    theirs.set_weights(ours.get_weights())
    for lib, model in ((tapefit, ours), (keras, theirs)):
        if kind == "classifier":
            loss, metrics = (
                lib.losses.SparseCategoricalCrossentropy(from_logits=True),
                [
                    "accuracy",
                    lib.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"),
                    lib.metrics.SparseCategoricalCrossentropy(from_logits=True, name="ce"),
                ],
            )
        elif kind == "binary":
            loss, metrics = (
                "binary_crossentropy",
                [
                    "accuracy",
                    lib.metrics.AUC(name="auc"),
                    lib.metrics.Precision(name="precision"),
                    lib.metrics.Recall(name="recall"),
                ],
            )
        else:
            loss, metrics = "mse", ["mae", lib.metrics.RootMeanSquaredError(name="rmse")]
        model.compile(optimizer="sgd", loss=loss, metrics=metrics)
    return ours, theirs


@pytest.mark.parametrize("kind", ["classifier", "binary", "1d"])
def test_a_chunked_evaluation_matches_keras(kind):
    ours, theirs = _evaluation_pair(kind)
    x, labels = _data(100, classes=2 if kind == "binary" else 3)
    y = {"classifier": labels, "binary": labels.astype("float32")[:, None]}.get(
        kind, np.random.default_rng(4).standard_normal(100).astype("float32")
    )
    got = ours.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    want = theirs.evaluate(x, y, batch_size=7, verbose=0, return_dict=True)
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(float(want[k]), rel=1e-5, abs=1e-6), k
