"""One helper that every al_keras layer's test runs through.

`run_layer_test` checks, for a layer class and its constructor arguments:
get_config/from_config round-trip (compared as JSON), weight counts, an eager
call and a symbolic call with the expected output shape, a `.keras`
round-trip with equal outputs, and one `fit` step that changes the weights
(for a layer with trainable weights).
"""

import json
import os
import tempfile

import keras
import numpy as np


def _to_json(config):
    return json.dumps(keras.saving.serialize_keras_object(config), sort_keys=True)


def run_layer_test(layer_cls, init_kwargs, input_data, expected_output_shape,
                   expected_num_trainable_weights,
                   expected_num_non_trainable_weights=0,
                   make_init_kwargs=None):
    """Runs the shared checks; returns the built layer.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_data: a numpy batch to call the layer on.
        expected_output_shape: output shape for `input_data`.
        expected_num_trainable_weights: number of trainable weight tensors.
        expected_num_non_trainable_weights: number of non-trainable ones.
        make_init_kwargs: optional zero-argument callable returning fresh
            constructor arguments, for arguments that are layers (a layer can
            have only one owner).
    """
    fresh = make_init_kwargs or (lambda: dict(init_kwargs))

    # Config round-trip, compared as JSON.
    layer = layer_cls(**fresh())
    config = layer.get_config()
    revived = layer_cls.from_config(config)
    assert _to_json(revived.get_config()) == _to_json(config)
    # And through Keras' registry.
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(revived) is layer_cls

    # Eager call and weight counts.
    eager_out = layer(input_data)
    assert tuple(eager_out.shape) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights

    # Symbolic call: a free batch axis.
    symbolic_layer = layer_cls(**fresh())
    inputs = keras.Input(shape=input_data.shape[1:])
    symbolic_out = symbolic_layer(inputs)
    assert tuple(symbolic_out.shape) == (None,) + tuple(expected_output_shape[1:])
    assert len(symbolic_layer.trainable_weights) == expected_num_trainable_weights

    # .keras round-trip with equal outputs.
    model = keras.Model(inputs, symbolic_out)
    expected = keras.ops.convert_to_numpy(model(input_data))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(input_data)), expected, atol=1e-6
    )

    if not expected_num_trainable_weights:
        return layer
    # One fit step trains the layer's weights.
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    target = np.random.default_rng(0).random(expected_output_shape).astype("float32")
    model.fit(input_data, target, batch_size=len(input_data), epochs=1, verbose=0)
    changed = [
        not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)
    ]
    assert any(changed), "one fit step changed no weight"
    return layer
