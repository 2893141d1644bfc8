"""`.keras` save/load keeps architecture, weights and every optimizer's state."""

import json

import keras
import numpy as np
import pytest

import al_keras


def _small(method):
    return al_keras.models.get(
        "mlp", input_shape=(64,), num_classes=10, method=method,
        hidden_units=32, label_units=16,
    )


def _optimizer_state(model):
    optimizers = [model.optimizer]
    if isinstance(model, al_keras.ALModel):
        optimizers += model.assoc_optimizers + model.ae_optimizers
    return [[v.numpy().copy() for v in o.variables] for o in optimizers]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["al", "bp"])
def test_reload_restores_everything_and_fit_continues_identically(
    method, digits, tmp_path
):
    (x, y), (x_test, _) = digits
    x, y = x[:256], y[:256]
    model = _small(method)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # safe_mode is on by default

    assert type(reloaded) is type(model)
    np.testing.assert_array_equal(
        reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0)
    )
    assert int(reloaded.optimizer.iterations) == 8
    before, after = _optimizer_state(model), _optimizer_state(reloaded)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    if method == "al":
        assert [int(o.iterations) for o in reloaded.assoc_optimizers] == [8, 8]
        assert [int(o.iterations) for o in reloaded.ae_optimizers] == [8, 8]

    # Continuing the original and the reloaded model gives the same weights:
    # Adam's moments and step counts came back, not just the weights.
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    reloaded.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    assert int(reloaded.optimizer.iterations) == 16
    for u, v in zip(model.weights, reloaded.weights):
        np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=1e-5, atol=1e-6)


def test_reload_keeps_options_and_exits(tmp_path, digits):
    (x, _), _ = digits
    model = al_keras.models.get(
        "mlp", input_shape=(64,), num_classes=10, hidden_units=16,
        label_units=8, num_blocks=3, activation="tanh",
        output_loss="categorical_crossentropy", loss_weights=[1.0, 0.5, 2.0],
        ae_lr_multiplier=3.0, bridge_multiplier=2,
    )
    model.compile(optimizer="adam")
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    def as_json(m):
        return json.dumps(m.get_config(), sort_keys=True)
    assert as_json(reloaded) == as_json(model)
    assert reloaded.loss_weights == [1.0, 0.5, 2.0]
    for exit in (1, 2, 3):
        np.testing.assert_array_equal(
            reloaded.predict(x[:8], exit=exit, verbose=0),
            model.predict(x[:8], exit=exit, verbose=0),
        )


def test_custom_encoders_round_trip(tmp_path):
    class Scale(keras.layers.Layer):  # deliberately not registered
        def call(self, x):
            return x * 2.0

    model = al_keras.associate(
        [keras.Sequential([keras.layers.Dense(8, "elu")])], num_classes=3,
        label_units=4, input_shape=(5,),
    )
    model.save(tmp_path / "m.keras")
    assert isinstance(keras.models.load_model(tmp_path / "m.keras"), al_keras.ALModel)

    unregistered = al_keras.associate([Scale()], num_classes=3, label_units=4,
                                      input_shape=(5,))
    unregistered.save(tmp_path / "u.keras")
    with pytest.raises(TypeError, match="Scale"):
        keras.models.load_model(tmp_path / "u.keras")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet20", "vgg"])
def test_batchnorm_backbones_round_trip(name, digits, tmp_path):
    (x, y), (x_test, _) = digits
    size = 16 if name == "vgg" else 8
    def images(a):
        return np.kron(a.reshape(-1, 8, 8, 1), np.ones((1, size // 8, size // 8, 1)))
    options = {"label_units": 8, "bridge_multiplier": 0}
    if name == "vgg":
        options["dense_units"] = 16
    model = al_keras.models.get(name, input_shape=(size, size, 1), num_classes=10,
                                **options)
    model.compile(optimizer="adam", metrics=["accuracy"])
    moving_before = [v.numpy().copy() for v in model.non_trainable_weights]
    model.fit(images(x[:64]), y[:64], batch_size=32, epochs=1, verbose=0)
    # Training updated the batch-norm statistics (training=True in the step).
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(moving_before, model.non_trainable_weights))
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    for exit in range(1, 5):
        np.testing.assert_allclose(
            reloaded.predict(images(x_test[:16]), exit=exit, verbose=0),
            model.predict(images(x_test[:16]), exit=exit, verbose=0), atol=1e-6)
