"""The model zoo: shapes of the original networks and their BP twins."""

import keras
import numpy as np
import pytest

import al_keras


def _count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def test_mlp_is_the_original_mnist_mlp():
    model = al_keras.models.get("mlp", input_shape=(28, 28, 1), num_classes=10)
    assert isinstance(model, al_keras.ALModel) and model.num_blocks == 2
    first, second = model.blocks
    assert first.encoder.layers[-1].kernel.shape == (784, 1024)
    assert second.encoder.layers[-1].kernel.shape == (1024, 1024)
    assert first.encoder.layers[-1].activation.__name__ == "elu"
    # Bridges: Flatten -> Dense(5n) -> Dense(n); b, g, h tanh (the paper's
    # sigmoid with original=True, tests/test_learning_from_the_start.py).
    assert first.bridge.hidden.kernel.shape == (1024, 5120)
    assert first.bridge.output_dense.kernel.shape == (5120, 1024)
    assert first.label_encoder.dense.kernel.shape == (10, 1024)
    assert first.label_decoder.dense.kernel.shape == (1024, 10)
    assert second.label_decoder.dense.kernel.shape == (1024, 1024)
    assert {b.activation for b in model.blocks} == {"tanh"}


def test_cnn_is_the_original_cnn():
    model = al_keras.models.get("cnn", input_shape=(28, 28, 1), num_classes=10)
    assert model.num_blocks == 4
    shape = (1, 28, 28, 1)
    out_shapes = []
    for block in model.blocks:
        convs = [layer for layer in block.encoder.layers
                 if isinstance(layer, keras.layers.Conv2D)]
        assert len(convs) == 2 and all(c.kernel_size == (3, 3) for c in convs)
        shape = block.compute_output_shape(shape)
        out_shapes.append(tuple(shape))
    assert out_shapes == [(1, 28, 28, 32), (1, 14, 14, 32), (1, 14, 14, 64), (1, 7, 7, 64)]
    assert model.blocks[3].bridge.hidden.kernel.shape == (7 * 7 * 64, 5 * 256)


def _block_output_shapes(model, input_shape):
    shape, shapes = (1,) + tuple(input_shape), []
    for block in model.blocks:
        shape = tuple(block.compute_output_shape(shape))
        shapes.append(shape[1:])
    return shapes


def test_vgg_is_the_original_split():
    model = al_keras.models.get("vgg", input_shape=(32, 32, 3), num_classes=10,
                                bridge_multiplier=0)  # small bridges: a fast test
    assert model.num_blocks == 4
    assert _block_output_shapes(model, (32, 32, 3)) == [
        (16, 16, 256), (8, 8, 512), (2, 2, 512), (1024,)]
    convs = [[layer.filters for layer in b.encoder.layers
              if isinstance(layer, keras.layers.Conv2D)]
             for b in model.blocks]
    assert convs == [[128, 256], [256, 512], [512, 512], []]
    assert {b.label_units for b in model.blocks} == {300}


@pytest.mark.parametrize("name, units", [("resnet20", 3), ("resnet32", 5)])
def test_resnets_are_the_original_split(name, units):
    model = al_keras.models.get(name, input_shape=(32, 32, 3), num_classes=10,
                                bridge_multiplier=0)
    assert model.num_blocks == 4
    assert _block_output_shapes(model, (32, 32, 3)) == [
        (32, 32, 16), (32, 32, 16), (16, 16, 32), (8, 8, 64)]
    stages = [b.encoder.layers for b in model.blocks[1:]]
    assert [len(s) for s in stages] == [units] * 3
    assert all(isinstance(u, al_keras.ResidualUnit) for s in stages for u in s)
    assert [s[0].projection is not None for s in stages] == [False, True, True]


@pytest.mark.parametrize("name, shape, options", [
    ("mlp", (64,), {"hidden_units": 32, "label_units": 16, "num_blocks": 3}),
    ("cnn", (8, 8), {"filters": (4, 4, 8, 8), "label_units": 8}),
    ("vgg", (16, 16, 3), {"label_units": 8, "dense_units": 16}),
    ("resnet20", (8, 8, 3), {"label_units": 8}),
])
def test_bp_twin_has_the_al_inference_path_parameters(name, shape, options):
    al = al_keras.models.get(name, input_shape=shape, num_classes=10, **options)
    bp = al_keras.models.get(name, input_shape=shape, num_classes=10,
                             method="bp", **options)
    assert isinstance(bp, al_keras.BPModel)
    inference = [v for b in al.blocks for v in b.encoder.weights]
    inference += al.blocks[-1].bridge.weights
    inference += [v for b in al.blocks for v in b.label_decoder.weights]
    assert _count(bp.weights) == _count(inference)
    twin = al_keras.bp_twin(al)
    assert _count(twin.weights) == _count(bp.weights)
    x = np.zeros((2,) + shape, "float32")
    assert twin.predict(x, verbose=0).shape == (2, 10)


def test_light_bridges_pool_and_narrow_and_the_bp_twin_mirrors_them():
    original = al_keras.models.get("cnn", input_shape=(28, 28, 1), num_classes=10)
    light = al_keras.models.get("cnn", input_shape=(28, 28, 1), num_classes=10,
                                bridge_multiplier=1, bridge_pool_size=2)
    # Each bridge sees the map pooled to 2x2: 2 * 2 * C features, 1n hidden.
    assert [b.bridge.hidden.kernel.shape for b in light.blocks] == [
        (2 * 2 * 32, 256), (2 * 2 * 32, 256), (2 * 2 * 64, 256), (2 * 2 * 64, 256)]
    assert original.blocks[0].bridge.hidden.kernel.shape == (28 * 28 * 32, 1280)
    assert light.count_params() < original.count_params() / 10
    # Encoders, g and h are untouched.
    for a, b in zip(original.blocks, light.blocks):
        assert _count(a.encoder.weights) == _count(b.encoder.weights)
        assert _count(a.label_encoder.weights) == _count(b.label_encoder.weights)
    bp = al_keras.models.get("cnn", input_shape=(28, 28, 1), num_classes=10,
                             method="bp", bridge_multiplier=1, bridge_pool_size=2)
    inference = [v for b in light.blocks for v in b.encoder.weights]
    inference += light.blocks[-1].bridge.weights
    inference += [v for b in light.blocks for v in b.label_decoder.weights]
    assert _count(bp.weights) == _count(inference)
    assert al_keras.bp_twin(light).bridge_pool_size == 2
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype("float32")
    assert light.predict(x, verbose=0).shape == (3, 10)


@pytest.mark.parametrize("call, message", [
    (lambda: al_keras.models.get("vgg99", input_shape=(8,), num_classes=3),
     "Unknown model 'vgg99'"),
    (lambda: al_keras.models.get("cnn", input_shape=(64,), num_classes=3), "image inputs"),
    (lambda: al_keras.models.get("vgg", input_shape=(8, 8, 3), num_classes=3), "at least 16x16"),
    (lambda: al_keras.models.get("resnet20", input_shape=(8, 8, 3), num_classes=3, depth=21),
     "6k \\+ 2"),
])
def test_bad_builder_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# The zoo's own MLP sizes (None: the builder's default) on 8 features, 3 classes.
_ZOO_MLP = dict(input_shape=(8,), num_classes=3, num_blocks=None, hidden_units=None,
                label_units=None)


@pytest.mark.parametrize("options, message", [
    (dict(method="dfa"), "Unknown method 'dfa'"),
    (dict(widht=3), r"Unknown option\(s\) \['widht'\]"),
    (dict(method="bp", output_loss="mse"), "output_loss"),
    (dict(num_blocks=0), "num_blocks"),
    (dict(num_classes=1), "num_classes"),
    (dict(activation="gelu"), "activation"),
    (dict(loss_weights=[1.0]), "loss_weights"),
])
def test_bad_mlp_arguments_are_named(options, message, mlp):
    with pytest.raises(ValueError, match=message):
        mlp(**{**_ZOO_MLP, **options})


@pytest.mark.parametrize("options, expected", [
    # The paper's sigmoid h_1 with MSE starts at the class prior (with the
    # tied initialisation too: tests/test_learning_from_the_start.py).
    ({"original": True}, -np.log(9.0)),
    ({}, 0.0),
    ({"activation": "tanh", "original": True}, 0.0),
    ({"output_loss": "categorical_crossentropy"}, 0.0),
])
def test_first_decoder_bias_starts_at_the_class_prior(options, expected):
    model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                hidden_units=8, label_units=4, **options)
    np.testing.assert_allclose(
        model.blocks[0].label_decoder.dense.bias.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(model.blocks[1].label_decoder.dense.bias.numpy(), 0.0)
