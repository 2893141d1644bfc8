"""ALModel training behaviour: labels, weights, options, optimizers, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras.training import callbacks


def _model(**options):
    settings = dict(hidden_units=32, label_units=16)
    settings.update(options)
    return al_keras.models.get("mlp", input_shape=(64,), num_classes=10, **settings)


@pytest.mark.slow
def test_integer_and_one_hot_labels_train_identically(digits):
    (x, y), _ = digits
    x, y = x[:128], y[:128]
    logs = []
    for labels in (y, y.reshape(-1, 1), keras.utils.to_categorical(y, 10)):
        keras.utils.set_random_seed(3)
        model = _model()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        history = model.fit(x, labels, batch_size=32, epochs=2, shuffle=False, verbose=0)
        logs.append(history.history)
    for other in logs[1:]:
        assert other.keys() == logs[0].keys()
        for key in logs[0]:
            np.testing.assert_allclose(other[key], logs[0][key], rtol=1e-5)


def test_sample_weights_weight_losses_and_metrics(digits):
    (x, y), _ = digits
    x, y = x[:64], y[:64]
    model = _model()
    model.compile(optimizer="adam", metrics=["accuracy"],
                  weighted_metrics=["accuracy"])
    plain = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    doubled = model.evaluate(x, y, sample_weight=np.full(64, 2.0), batch_size=64,
                             verbose=0, return_dict=True)
    for key in ("loss", "assoc_loss_1", "ae_loss_2"):
        np.testing.assert_allclose(doubled[key], 2 * plain[key], rtol=1e-5)
    correct = model.predict(x, verbose=0).argmax(-1) == y
    only_correct = model.evaluate(x, y, sample_weight=correct.astype("float32"),
                                  batch_size=64, verbose=0, return_dict=True)
    # As in Keras: `weighted_metrics` use the weights, `metrics` do not.
    assert only_correct["weighted_accuracy"] == pytest.approx(1.0)
    assert only_correct["accuracy"] == pytest.approx(correct.mean())


def test_loss_weights_scale_each_blocks_losses(digits):
    (x, y), _ = digits
    model = _model(loss_weights=[2.0, 0.5])
    plain = _model()
    plain.set_weights(model.get_weights())
    for m in (model, plain):
        m.compile(optimizer="adam")
    a = model.evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    b = plain.evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    np.testing.assert_allclose(a["assoc_loss_1"], 2 * b["assoc_loss_1"], rtol=1e-5)
    np.testing.assert_allclose(a["ae_loss_2"], 0.5 * b["ae_loss_2"], rtol=1e-5)


def test_cross_entropy_output_loss(digits):
    (x, y), _ = digits
    model = _model(output_loss="categorical_crossentropy")
    model.compile(optimizer="adam")
    assert model.blocks[0].label_decoder.activation == "softmax"
    logs = model.evaluate(x[:64], y[:64], batch_size=64, verbose=0, return_dict=True)
    t1 = model.blocks[0].label_encoder(np.eye(10, dtype="float32")[y[:64]])
    probs = model.blocks[0].label_decoder(t1).numpy()
    expected = -np.mean(np.log(probs[np.arange(64), y[:64]]))
    np.testing.assert_allclose(logs["ae_loss_1"], expected, rtol=1e-4)
    np.testing.assert_allclose(model.predict(x[:5], verbose=0).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("activation", ["tanh", "elu", "relu"])
def test_other_activations_train(activation, digits):
    (x, y), _ = digits
    model = _model(activation=activation)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    history = model.fit(x[:256], y[:256], epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_block_optimizers_are_clones_that_follow_the_learning_rate(digits):
    (x, y), _ = digits
    model = _model(ae_lr_multiplier=3.0)
    template = keras.optimizers.Adam(1e-3, beta_1=0.8)
    model.compile(optimizer=template)
    optimizers = model.assoc_optimizers + model.ae_optimizers
    assert len({id(o) for o in optimizers}) == 4 and template not in optimizers
    assert all(isinstance(o, keras.optimizers.Adam) and o.beta_1 == 0.8 for o in optimizers)
    model.fit(x[:32], y[:32], epochs=1, verbose=0)
    assert float(model.ae_optimizers[0].learning_rate) == pytest.approx(3e-3)
    # A callback such as ReduceLROnPlateau sets model.optimizer's rate.
    model.optimizer.learning_rate = 1e-4
    model.fit(x[:32], y[:32], epochs=1, verbose=0)
    assert float(model.assoc_optimizers[1].learning_rate) == pytest.approx(1e-4)
    assert float(model.ae_optimizers[1].learning_rate) == pytest.approx(3e-4)


def test_learning_rate_schedules_carry_over(digits):
    (x, y), _ = digits
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 2, 0.5)
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    model.fit(x[:96], y[:96], batch_size=32, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 3
    expected = float(schedule(3))
    assert float(model.assoc_optimizers[0].learning_rate) == pytest.approx(expected)
    assert float(model.ae_optimizers[0].learning_rate) == pytest.approx(2 * expected)
    assert float(model.optimizer.learning_rate) == pytest.approx(expected)


def test_string_optimizer_and_sgd(digits):
    (x, y), _ = digits
    model = _model()
    model.compile(optimizer="sgd")
    assert all(isinstance(o, keras.optimizers.SGD) for o in model.ae_optimizers)
    model.fit(x[:32], y[:32], epochs=1, verbose=0)


def test_compile_before_build_builds_optimizers_with_the_model(digits):
    (x, y), _ = digits
    model = al_keras.associate(
        [keras.layers.Dense(16, "elu"), keras.layers.Dense(16, "elu")],
        num_classes=10, label_units=8,
    )
    model.compile(optimizer="adam", metrics=["accuracy"])
    assert model.assoc_optimizers == []
    model.fit(x[:64], y[:64], epochs=1, verbose=0)
    assert [int(o.iterations) for o in model.assoc_optimizers] == [2, 2]


def test_run_eagerly_matches_compiled(digits):
    (x, y), _ = digits
    histories = []
    for eager in (False, True):
        keras.utils.set_random_seed(5)
        model = _model()
        model.compile(optimizer="adam", run_eagerly=eager)
        histories.append(model.fit(x[:64], y[:64], batch_size=32, shuffle=False,
                                   epochs=1, verbose=0).history)
    for key in histories[0]:
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-4)


@pytest.mark.slow
def test_jit_compile_matches_plain_graph(digits):
    """XLA (train.py's default) computes the same AL step as the plain graph."""
    (x, y), (x_test, _) = digits
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(6)
        model = _model()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                      jit_compile=jit)
        history = model.fit(x[:256], y[:256], batch_size=32, shuffle=False,
                            epochs=2, verbose=0).history
        assert model.jit_compile is jit
        results.append((history, model.predict(x_test[:32], verbose=0)))
    (plain, plain_pred), (xla, xla_pred) = results
    assert plain["loss"][-1] < plain["loss"][0]
    for key in plain:
        np.testing.assert_allclose(xla[key], plain[key], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(xla_pred, plain_pred, atol=1e-4)


def test_exits(digits):
    (x, y), (x_test, y_test) = digits
    model = _model(num_blocks=3)
    model.compile(optimizer="adam", metrics=["accuracy"])
    full = model.predict(x_test[:16], verbose=0)
    np.testing.assert_array_equal(model.predict(x_test[:16], exit=3, verbose=0), full)
    np.testing.assert_allclose(model(x_test[:16], exit=1).numpy(),
                               model.predict(x_test[:16], exit=1, verbose=0), atol=1e-6)
    assert not np.allclose(model.predict(x_test[:16], exit=1, verbose=0), full)
    acc_1 = model.evaluate(x_test, y_test, exit=1, verbose=0, return_dict=True)["accuracy"]
    pred_1 = model.predict(x_test, exit=1, verbose=0).argmax(-1)
    assert acc_1 == pytest.approx(np.mean(pred_1 == y_test))
    # The default path is untouched by an exit call.
    np.testing.assert_array_equal(model.predict(x_test[:16], verbose=0), full)


@pytest.mark.slow
def test_every_exit_from_one_pass_equals_each_exit_alone(digits):
    (x, y), (x_test, y_test) = digits
    model = _model(num_blocks=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    outputs = model.call_exits(x_test[:16])
    assert sorted(outputs) == [1, 2, 3]
    for exit, probabilities in outputs.items():
        np.testing.assert_allclose(probabilities.numpy(),
                                   model(x_test[:16], exit=exit).numpy(), atol=1e-6)
    assert sorted(model.call_exits(x_test[:4], exits=[3, 1])) == [1, 3]
    # Accuracies of every exit in one pass, as evaluate(exit=i) gives them,
    # also with a partial last batch and one-hot labels.
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(100)
    expected = [model.evaluate(test, exit=e, verbose=0, return_dict=True)["accuracy"]
                for e in (1, 2, 3)]
    assert callbacks.exit_accuracies(model, test) == pytest.approx(expected, abs=1e-6)
    assert model.evaluate_exits(test, [2]) == {2: pytest.approx(expected[1], abs=1e-6)}
    assert callbacks.exit_accuracies(model, test, []) == []
    one_hot = test.map(lambda a, b: (a, tf.one_hot(b, 10)))
    assert callbacks.exit_accuracies(model, one_hot, [3, 1]) == pytest.approx(
        [expected[2], expected[0]], abs=1e-6)
    assert len({round(a, 4) for a in expected}) > 1  # The exits differ.
    with pytest.raises(ValueError, match="exit"):
        model.call_exits(x_test[:4], exits=[4])


@pytest.mark.parametrize("exit, error", [(0, ValueError), (4, ValueError), (1.5, TypeError)])
def test_bad_exit_is_named(exit, error, digits):
    model = _model(num_blocks=3)
    with pytest.raises(error, match="exit"):
        model.predict(digits[1][0][:4], exit=exit, verbose=0)


def test_compile_refuses_a_loss():
    with pytest.raises(ValueError, match="local losses"):
        _model().compile(optimizer="adam", loss="mse")


@pytest.mark.parametrize("bad", [10, -1])
def test_labels_out_of_range_are_refused_in_the_step_too(bad, digits):
    # fit checks the data first (test_bad_input.py); without that check, a
    # step without XLA still asserts the range.
    (x, y), _ = digits
    model = _model()
    model.compile(optimizer="adam", jit_compile=False)
    labels = y[:32].copy()
    labels[3] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes=10|>= 0"):
        model.fit(x[:32], labels, epochs=1, verbose=0, check_data=False)
