"""The AL layers through the shared layer-test helper, plus their contracts."""

import keras
import numpy as np
import pytest

import al_keras
from al_keras.core import layers
from layer_test_helper import run_layer_test

VECTORS = np.random.default_rng(0).random((4, 12)).astype("float32")
IMAGES = np.random.default_rng(0).random((4, 6, 6, 3)).astype("float32")


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "elu", "relu"])
def test_label_encoder(activation):
    layer = run_layer_test(
        layers.LabelEncoder, {"units": 5, "activation": activation},
        VECTORS, (4, 5), expected_num_trainable_weights=2,
    )
    assert layer.dense.kernel.shape == (12, 5)


def test_label_encoder_default_is_the_original_sigmoid():
    out = np.asarray(layers.LabelEncoder(5)(VECTORS))
    assert (out > 0).all() and (out < 1).all()


def test_label_decoder_softmax_rows_sum_to_one():
    layer = run_layer_test(
        layers.LabelDecoder, {"units": 3, "activation": "softmax"},
        VECTORS, (4, 3), expected_num_trainable_weights=2,
    )
    np.testing.assert_allclose(np.asarray(layer(VECTORS)).sum(-1), 1.0, rtol=1e-5)


def test_bridge_original_shape_flattens_then_5n_then_n():
    layer = run_layer_test(
        layers.Bridge, {"units": 4}, IMAGES, (4, 4),
        expected_num_trainable_weights=4,
    )
    assert layer.hidden.kernel.shape == (6 * 6 * 3, 20)
    assert layer.output_dense.kernel.shape == (20, 4)


def test_bridge_without_hidden_layer():
    layer = run_layer_test(
        layers.Bridge, {"units": 4, "hidden_multiplier": 0}, VECTORS, (4, 4),
        expected_num_trainable_weights=2,
    )
    assert layer.hidden is None


def test_feature_pooling_averages_windows_to_about_k_by_k():
    layer = run_layer_test(
        layers.FeaturePooling, {"pool_size": 2}, IMAGES, (4, 2, 2, 3),
        expected_num_trainable_weights=0,
    )
    out = np.asarray(layer(IMAGES))
    np.testing.assert_allclose(out[:, 1, 0], IMAGES[:, 3:, :3].mean(axis=(1, 2)),
                               rtol=1e-6)
    # 7x7 to 2: windows 0-3 and 3-6, every row and column used.
    odd = np.random.default_rng(1).random((2, 7, 7, 1)).astype("float32")
    pooled = np.asarray(layers.FeaturePooling(2)(odd))
    assert pooled.shape == (2, 2, 2, 1)
    np.testing.assert_allclose(pooled[:, 1, 0], odd[:, 3:, :4].mean(axis=(1, 2)),
                               rtol=1e-5)
    # A map smaller than k stays as it is.
    np.testing.assert_allclose(np.asarray(layers.FeaturePooling(4)(odd[:, :3, :3])),
                               odd[:, :3, :3], rtol=1e-6)
    # 1: global average pooling; vectors pass unchanged.
    np.testing.assert_allclose(np.asarray(layers.FeaturePooling(1)(IMAGES))[:, 0, 0],
                               IMAGES.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(layers.FeaturePooling(2)(VECTORS)), VECTORS)


def test_light_bridge_pools_then_narrows():
    layer = run_layer_test(
        layers.Bridge, {"units": 4, "hidden_multiplier": 1, "pool_size": 2},
        IMAGES, (4, 4), expected_num_trainable_weights=4,
    )
    assert layer.hidden.kernel.shape == (2 * 2 * 3, 4)  # Not 6 * 6 * 3.
    # Its output is the unpooled bridge's on the pooled map.
    plain = layers.Bridge(4, hidden_multiplier=1)
    plain.build((None, 2, 2, 3))
    plain.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        np.asarray(layer(IMAGES)),
        np.asarray(plain(layers.FeaturePooling(2)(IMAGES))), rtol=1e-5)


def _dense_block_kwargs():
    return {
        "encoder": keras.layers.Dense(7, activation="elu"),
        "label_units": 5,
        "target_units": 3,
        "bridge_multiplier": 2,
    }


def test_associated_block_dense():
    block = run_layer_test(
        al_keras.AssociatedBlock, None, VECTORS, (4, 7),
        expected_num_trainable_weights=2 + 2 + 4 + 2,  # f, g, b, h
        make_init_kwargs=_dense_block_kwargs,
    )
    assert block.label_encoder.dense.kernel.shape == (3, 5)
    assert block.bridge.hidden.kernel.shape == (7, 10)
    assert block.label_decoder.dense.kernel.shape == (5, 3)
    assert len(block.input_side_variables) == 6
    assert len(block.label_side_variables) == 4


def _conv_block_kwargs():
    return {
        "encoder": keras.Sequential([
            keras.layers.Conv2D(2, 3, padding="same", activation="elu"),
            keras.layers.BatchNormalization(),
        ]),
        "label_units": 4,
        "target_units": 10,
    }


def test_associated_block_with_a_sequential_encoder():
    block = run_layer_test(
        al_keras.AssociatedBlock, None, IMAGES, (4, 6, 6, 2),
        expected_num_trainable_weights=2 + 2 + 2 + 4 + 2,  # conv, bn, g, b, h
        expected_num_non_trainable_weights=2,  # bn moving stats
        make_init_kwargs=_conv_block_kwargs,
    )
    assert block.bridge.hidden.kernel.shape == (6 * 6 * 2, 20)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: layers.LabelEncoder(0), "units"),
        (lambda: layers.LabelEncoder(3, activation="softmax"), "activation"),
        (lambda: layers.Bridge(3, hidden_multiplier=-1), "hidden_multiplier"),
        (lambda: layers.Bridge(3, pool_size=-2), "pool_size"),
        (lambda: layers.Bridge(3, pool_size=1.5), "pool_size"),
        (lambda: layers.FeaturePooling(0), "pool_size"),
        (lambda: al_keras.AssociatedBlock("dense", 3, 3), "encoder"),
    ],
)
def test_bad_arguments_are_named(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


@pytest.mark.parametrize("filters, strides, expected_shape, weights", [
    (3, 1, (4, 6, 6, 3), 2 * 3),        # identity shortcut: 2 x (conv, bn)
    (5, 2, (4, 3, 3, 5), 2 * 3 + 2),    # projection shortcut adds a 1x1 conv
])
def test_residual_unit(filters, strides, expected_shape, weights):
    unit = run_layer_test(
        al_keras.ResidualUnit, {"filters": filters, "strides": strides},
        IMAGES, expected_shape, expected_num_trainable_weights=weights,
        expected_num_non_trainable_weights=4,  # two batch norms' moving stats
    )
    assert (unit.projection is None) == (filters == 3 and strides == 1)
