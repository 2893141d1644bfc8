"""AL's block step: the paper's math for one block, once, on every backend.

For block i, with `s_0 = x`, `t_0 = one_hot(y)` and `sg` = stop_gradient:

* label side: `t_i = g_i(sg(t_{i-1}))`, the **auto-encoder loss**
  `MSE(h_i(t_i), sg(t_{i-1}))` (for `h_1`, the model's `output_loss`)
  trains g_i and h_i;
* input side: `s_i = f_i(sg(s_{i-1}))`, the **associated loss**
  `MSE(b_i(s_i), sg(t_i))` trains f_i and b_i.

Everything here is `keras.ops`: the TensorFlow trainer differentiates
`label_side` and `input_side` under one `tf.GradientTape` each, the JAX
trainer with one `jax.value_and_grad` each (`al_keras/core/trainers/`), and
every executor (sequential, placed on devices, pipelined, Ray stages) calls
`block_forward` or the two sides, never a copy of them.
"""

import keras
from keras import ops

OUTPUT_LOSSES = ("mse", "categorical_crossentropy")


def label_side(block, t_prev, sample_weight=None, *, training=True,
               first=False, output_loss="mse", weight=1.0):
    """Block `block`'s label side: `(t_i, auto-encoder loss)`.

    Args:
        block: an `AssociatedBlock`.
        t_prev: `t_{i-1}` (the one-hot labels for the first block); no
            gradient reaches it.
        sample_weight: optional per-example weights `(batch,)`.
        training: passed to g and h.
        first: whether this is block 1, whose `h_1` is trained with
            `output_loss` (`"mse"` or `"categorical_crossentropy"`).
        weight: the block's loss weight (`ALModel(loss_weights=...)`).

    Returns:
        `(t_i, loss)`, the loss a float32 scalar: the weighted mean over
        the batch plus g's and h's regularization, times `weight`.
    """
    t_prev = ops.stop_gradient(t_prev)
    t = block.label_encoder(t_prev, training=training)
    reconstruction = ops.cast(block.label_decoder(t, training=training), "float32")
    target = ops.cast(t_prev, "float32")
    if first and output_loss == "categorical_crossentropy":
        per_example = keras.losses.categorical_crossentropy(target, reconstruction)
    else:
        per_example = keras.losses.mean_squared_error(target, reconstruction)
    loss = weighted_mean(per_example, sample_weight) + regularization(
        block.label_encoder, block.label_decoder)
    return t, loss * weight


def input_side(block, s_prev, t, sample_weight=None, *, training=True, weight=1.0):
    """Block `block`'s input side: `(s_i, b_i(s_i), associated loss)`.

    No gradient reaches `s_prev` (block i-1's output) nor the target `t`
    (g_i's output).  The loss is as in `label_side`, for f and b.
    """
    s = block.encoder(ops.stop_gradient(s_prev), training=training)
    prediction = block.bridge(s, training=training)
    per_example = keras.losses.mean_squared_error(
        ops.cast(ops.stop_gradient(t), "float32"), ops.cast(prediction, "float32"))
    loss = weighted_mean(per_example, sample_weight) + regularization(
        block.encoder, block.bridge)
    return s, prediction, loss * weight


def block_forward(block, s_prev, t_prev, sample_weight=None, *, training=True,
                  first=False, output_loss="mse", weight=1.0):
    """Both sides of one block: `(s_i, t_i, b_i(s_i), assoc_loss, ae_loss)`."""
    t, ae_loss = label_side(block, t_prev, sample_weight, training=training,
                            first=first, output_loss=output_loss, weight=weight)
    s, prediction, assoc_loss = input_side(block, s_prev, t, sample_weight,
                                           training=training, weight=weight)
    return s, t, prediction, assoc_loss, ae_loss


def decode(blocks, t, training=False):
    """`t` decoded by the label decoders of `blocks`, in that order
    (`h_i ... h_1` for the exit at block i: pass the blocks reversed)."""
    for block in blocks:
        t = block.label_decoder(t, training=training)
    return t


def scores(decoded, output_loss="mse"):
    """Class probabilities from the output of h_1.

    A softmax `h_1` (cross-entropy) is already a distribution; a bounded
    `h_1` (MSE) is clipped at 0 and normalised (argmax unchanged).
    """
    decoded = ops.cast(decoded, "float32")
    if output_loss == "categorical_crossentropy":
        return decoded
    decoded = ops.relu(decoded) + 1e-7
    return decoded / ops.sum(decoded, axis=-1, keepdims=True)


def weighted_mean(per_example, sample_weight=None):
    """Mean over the batch, weighted like Keras' `sum_over_batch_size`."""
    if sample_weight is None:
        return ops.mean(per_example)
    weight = ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(per_example))
    return ops.sum(per_example * weight) / ops.cast(ops.size(per_example), "float32")


def regularization(*layers):
    """The sum of the regularization losses of `layers` (float32)."""
    losses = [ops.cast(loss, "float32") for layer in layers for loss in layer.losses]
    total = 0.0
    for loss in losses:
        total = total + loss
    return total
