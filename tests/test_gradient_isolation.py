"""No gradient crosses a block boundary, nor goes from one loss family to the other."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras


def _three_block_model(input_shape=(12,)):
    return al_keras.associate(
        [keras.layers.Dense(9, "elu"), keras.layers.Dense(8, "elu"),
         keras.layers.Dense(7, "elu")],
        num_classes=4, label_units=[6, 5, 3], input_shape=input_shape,
    )


def _batch(n=16):
    rng = np.random.default_rng(0)
    return rng.random((n, 12)).astype("float32"), rng.integers(0, 4, n)


def _owners(model):
    """Maps each trainable variable's id to (block index, 'fb' or 'gh')."""
    owners = {}
    for i, block in enumerate(model.blocks):
        for v in block.input_side_variables:
            owners[id(v)] = (i, "fb")
        for v in block.label_side_variables:
            owners[id(v)] = (i, "gh")
    return owners


@pytest.mark.tensorflow_only
def test_each_local_loss_reaches_only_its_own_part():
    model = _three_block_model()
    x, y = _batch()
    variables = model.trainable_variables
    owners = _owners(model)
    assert len(owners) == len(variables)
    with tf.GradientTape(persistent=True) as tape:
        assoc_losses, ae_losses, _ = model.local_losses(x, y, training=True)
    for family, losses in (("fb", assoc_losses), ("gh", ae_losses)):
        for i, loss in enumerate(losses):
            grads = tape.gradient(loss, variables)
            reached = {
                owners[id(v)] for g, v in zip(grads, variables) if g is not None
            }
            # The loss of block i and family `family` trains exactly that part.
            assert reached == {(i, family)}, (family, i, reached)
            own = [g for g, v in zip(grads, variables)
                   if owners[id(v)] == (i, family)]
            assert all(g is not None and np.any(g.numpy() != 0) for g in own)


@pytest.mark.parametrize("only_block", [0, 1, 2])
def test_one_fit_step_moves_only_the_block_whose_loss_is_nonzero(only_block):
    weights = [0.0, 0.0, 0.0]
    weights[only_block] = 1.0
    model = al_keras.associate(
        [keras.layers.Dense(9, "elu"), keras.layers.Dense(8, "elu"),
         keras.layers.Dense(7, "elu")],
        num_classes=4, label_units=[6, 5, 3], input_shape=(12,),
        loss_weights=weights,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    before = {id(v): v.numpy().copy() for v in model.trainable_variables}
    x, y = _batch()
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    owners = _owners(model)
    for v in model.trainable_variables:
        moved = not np.array_equal(before[id(v)], v.numpy())
        assert moved == (owners[id(v)][0] == only_block), v.path


@pytest.mark.tensorflow_only
def test_train_step_raises_when_a_part_has_no_gradient():
    class Unused(keras.layers.Layer):
        def build(self, shape):
            self.dense = keras.layers.Dense(5)
            self.dense.build(shape)
            self.dead = self.add_weight(shape=(3,), name="dead")

        def call(self, x):
            return self.dense(x)

    model = al_keras.associate([Unused()], num_classes=4, label_units=3,
                               input_shape=(12,))
    model.compile(optimizer="sgd")
    x, y = _batch()
    with pytest.raises(ValueError, match="no gradient for .*dead"):
        model.fit(x, y, epochs=1, verbose=0)
