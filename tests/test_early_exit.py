"""Adaptive early exit: the path, its calibration, its export, its errors."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras.core import early_exit

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def trained(digits):
    """A 3-block AL MLP trained for a few epochs, and held-out data."""
    (x, y), (x_test, y_test) = digits
    keras.utils.set_random_seed(7)
    model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                hidden_units=64, label_units=32, num_blocks=3)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    model.fit(x[:1200], y[:1200], epochs=4, batch_size=32, verbose=0)
    return model, (x[1200:], y[1200:]), (x_test, y_test)


@pytest.fixture(scope="module")
def untrained():
    """A zoo CNN and an `associate`d model, untrained, on 8x8x1 digits."""
    cnn = al_keras.models.get("cnn", input_shape=(8, 8, 1), num_classes=10,
                              filters=(4, 4, 8, 8), label_units=8, bridge_pool_size=2)
    associated = al_keras.associate(
        [keras.layers.Flatten(), keras.layers.Dense(16, "elu"), keras.layers.Dense(16, "elu")],
        num_classes=10, label_units=12, input_shape=(8, 8, 1),
        output_loss="categorical_crossentropy")
    return {"cnn": cnn, "associate": associated}


@pytest.mark.parametrize("kind", ["cnn", "associate"])
@pytest.mark.parametrize("confidence", ["max_prob", "margin"])
def test_threshold_zero_is_exit_one_and_above_one_the_full_path(kind, confidence, digits,
                                                                untrained):
    (x, _), _ = digits
    x = x[:40].reshape((-1, 8, 8, 1))
    model = untrained[kind]
    first = model.predict(x, exit="adaptive", threshold=0.0, confidence=confidence,
                          verbose=0)
    np.testing.assert_array_equal(first["exit"], np.ones(40))
    np.testing.assert_allclose(first["probabilities"], model.predict(x, exit=1, verbose=0),
                               atol=1e-6)
    full = model.predict(x, exit="adaptive", threshold=1.01, confidence=confidence,
                         verbose=0)
    np.testing.assert_array_equal(full["exit"], np.full(40, model.num_blocks))
    np.testing.assert_allclose(full["probabilities"], model.predict(x, verbose=0), atol=1e-6)
    # An uncalibrated model's default is the full path.
    assert model.exit_threshold is None
    np.testing.assert_array_equal(model.predict(x, exit="adaptive", verbose=0)["exit"],
                                  full["exit"])


@pytest.mark.parametrize("confidence", ["max_prob", "margin"])
def test_each_example_takes_its_first_confident_exit(trained, confidence):
    model, (x_val, _), _ = trained
    every = model.call_exits(x_val)
    probabilities = np.stack([np.asarray(every[e]) for e in (1, 2, 3)], axis=1)  # (n, 3, 10)
    top = np.sort(probabilities, -1)
    scores = top[..., -1] if confidence == "max_prob" else top[..., -1] - top[..., -2]
    threshold = float(np.quantile(scores[:, 0], 0.5))
    out = model.predict(x_val, exit="adaptive", threshold=threshold, confidence=confidence,
                        verbose=0)
    expected = np.array([next((e + 1 for e in range(2) if s[e] >= threshold), 3)
                         for s in scores])
    assert len(set(expected)) >= 2
    np.testing.assert_array_equal(out["exit"], expected)
    np.testing.assert_allclose(out["probabilities"],
                               probabilities[np.arange(len(x_val)), expected - 1], atol=1e-6)
    # evaluate(exit="adaptive") scores the same predictions.
    y_val = trained[1][1]
    accuracy = model.evaluate(x_val, y_val, exit="adaptive", threshold=threshold,
                              confidence=confidence, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(float((out["probabilities"].argmax(-1) == y_val).mean()))


@pytest.mark.tensorflow_only  # Its model's finite threshold is TensorFlow's draw;
# on JAX the same recipe keeps the full path (calibrated on JAX: test_backends.py).
def test_calibration_is_repeatable_and_keeps_within_the_drop(trained, tmp_path):
    model, (x_val, y_val), _ = trained
    data = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(64)
    flops = early_exit.exit_flops(model)
    first = early_exit.calibrate(model, data, max_accuracy_drop=0.01, flops=flops)
    again = early_exit.calibrate(model, data, max_accuracy_drop=0.01, flops=flops)
    assert first.threshold == again.threshold and first.accuracy == again.accuracy
    assert first.accuracy >= first.full_accuracy - 0.01
    full = model.predict(x_val, verbose=0).argmax(-1)
    assert first.full_accuracy == pytest.approx(float((full == y_val).mean()))
    # The lowest such threshold: one step lower, the drop's bound is outside.
    sweep = early_exit.tradeoff(*early_exit.exit_outputs(model, data), flops,
                                thresholds=[first.threshold - 0.001, first.threshold])
    bounds = sweep["drop"] + 1.645 * sweep["drop_error"]
    assert bounds[1] <= 0.01 and (first.threshold == 0 or bounds[0] > 0.01)
    assert sweep["drop"][1] == pytest.approx(first.full_accuracy - first.accuracy)
    # Without the bound (z = 0) the threshold is never higher.
    plain = early_exit.calibrate(model, data, max_accuracy_drop=0.01, drop_bound_z=0,
                                 flops=flops, keep=False)
    assert plain.threshold <= first.threshold
    # The threshold's numbers are those of predict(exit="adaptive").
    out = model.predict(x_val, exit="adaptive", verbose=0)  # The kept threshold.
    assert model.exit_threshold == first.threshold
    assert float((out["probabilities"].argmax(-1) == y_val).mean()) == pytest.approx(
        first.accuracy)
    fractions = np.bincount(out["exit"], minlength=4)[1:] / len(y_val)
    np.testing.assert_allclose(fractions, first.exit_fractions)
    cost = early_exit.adaptive_cost(flops, out["exit"]).mean()
    assert first.flops_per_example == pytest.approx(cost)
    assert first.flops_saved == pytest.approx(1 - cost / flops["exits"][-1])
    # Looser drops never pick a higher threshold; drop 1 takes exit 1 always.
    loose = early_exit.calibrate(model, data, max_accuracy_drop=1.0, flops=flops, keep=False)
    assert loose.threshold == 0.0 and loose.exit_fractions == [1.0, 0.0, 0.0]
    # Kept in the config: a .keras reload predicts the same adaptive path.
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert reloaded.exit_threshold == first.threshold
    np.testing.assert_array_equal(reloaded.predict(x_val, exit="adaptive", verbose=0)["exit"],
                                  out["exit"])


def test_flops_count_each_part_of_the_paths():
    model = al_keras.associate(
        [keras.layers.Dense(32), keras.layers.Dense(16)], num_classes=10, label_units=8,
        input_shape=(64,), bridge_multiplier=0)
    flops = early_exit.exit_flops(model)
    # A Dense layer of n -> m costs 2nm multiply-adds (+ m biases).
    assert flops["encoders"][0] == pytest.approx(2 * 64 * 32, rel=0.05)
    assert flops["encoders"][1] - flops["encoders"][0] == pytest.approx(2 * 32 * 16, rel=0.05)
    # Exit 1: f_1, b_1 (32 -> 8), h_1 (8 -> 10).
    assert flops["exits"][0] - flops["encoders"][0] == pytest.approx(
        2 * 32 * 8 + 2 * 8 * 10, rel=0.1)
    # Leaving at exit 2 has cost f_1, f_2 and both heads tried.
    heads = np.subtract(flops["exits"], flops["encoders"])
    assert early_exit.adaptive_cost(flops, [2])[0] == pytest.approx(
        flops["encoders"][1] + heads.sum())


class CountingDense(keras.layers.Layer):
    """A Dense layer that counts the examples it has seen in `calls`."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, "elu")

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="calls")

    def call(self, inputs, training=False):
        self.calls.assign_add(tf.cast(tf.shape(inputs)[0], "float32"))
        return self.dense(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)


@pytest.mark.slow
@pytest.mark.tensorflow_only  # A SavedModel and its graph.
def test_served_adaptive_signature_stops_early_and_equals_predict(digits, tmp_path):
    (x, y), (x_test, _) = digits
    model = al_keras.associate([CountingDense(24, name=f"counting_{i}") for i in range(3)],
                               num_classes=10, label_units=12, input_shape=(64,))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(x[:600], y[:600], epochs=3, verbose=0)
    counts = [b.encoder.calls for b in model.blocks]
    before = [float(c.numpy()) for c in counts]
    # In this process: a confident first exit runs block 1 alone.
    tf.function(model.adaptive_exit)(x_test[:1], threshold=0.0)
    assert [float(c.numpy()) - b for c, b in zip(counts, before)] == [1.0, 0.0, 0.0]

    scores = model.predict(x_test[:64], exit=1, verbose=0).max(-1)
    model.exit_threshold = float(np.quantile(scores, 0.5))
    model.export(tmp_path / "export")
    np.save(tmp_path / "x.npy", x_test[:64])
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "serve_adaptive.py"), str(tmp_path / "export"),
         str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(np.load(tmp_path / "out.npz"))
    expected = model.predict(x_test[:64], exit="adaptive", verbose=0)
    assert len(set(expected["exit"])) >= 2
    # The batch, and each example served alone, as predict(exit="adaptive").
    for key in ("batch", "one_by_one"):
        np.testing.assert_allclose(out[f"{key}/probabilities"], expected["probabilities"],
                                   atol=1e-5)
        np.testing.assert_array_equal(out[f"{key}/exit"], expected["exit"])
    # Served one at a time, block k ran for exactly the examples leaving at k or later.
    ran = out["one_by_one/block_calls"]
    np.testing.assert_array_equal(ran, [(expected["exit"] >= k).sum() for k in (1, 2, 3)])
    # At a threshold of 0 served alone, blocks 2 and 3 never run.
    np.testing.assert_array_equal(out["confident/block_calls"], [64, 0, 0])


def test_bad_adaptive_arguments_are_refused_in_one_line(trained):
    model, (x_val, y_val), _ = trained
    cases = [
        (dict(exit="adaptiv"), TypeError, 'or "adaptive"'),
        (dict(exit="adaptive", threshold=-0.1), ValueError, "must be >= 0"),
        (dict(exit="adaptive", threshold=float("nan")), ValueError, "must be >= 0"),
        (dict(exit="adaptive", threshold="high"), TypeError, "must be a number"),
        (dict(exit="adaptive", confidence="entropy"), ValueError, "max_prob"),
        (dict(exit=2, threshold=0.5), ValueError, 'for exit="adaptive"'),
    ]
    for kwargs, error, words in cases:
        with pytest.raises(error, match=words) as info:
            model.predict(x_val[:4], verbose=0, **kwargs)
        assert "\n" not in str(info.value)
    data = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(64)
    with pytest.raises(ValueError, match=r"max_accuracy_drop must be a number in \[0, 1\]"):
        early_exit.calibrate(model, data, max_accuracy_drop=5)
    with pytest.raises(ValueError, match="drop_bound_z must be a number >= 0"):
        early_exit.calibrate(model, data, drop_bound_z=-1)
    with pytest.raises(ValueError, match="holds no batch"):
        early_exit.calibrate(model, data.take(0))
    with pytest.raises(ValueError, match="exit confidence"):
        al_keras.ALModel(model.blocks, 10, exit_confidence="entropy")
