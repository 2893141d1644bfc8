"""Turning the labels Keras users pass (class ids or one-hot) into targets."""

import keras
from keras import ops


def check_num_classes(num_classes):
    """Returns `num_classes` if it is an int >= 2, else raises ValueError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or (
        num_classes < 2
    ):
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
    return num_classes


def is_one_hot(y, num_classes):
    """True when `y` is (batch, num_classes) one-hot/probabilities, else ids.

    Decided from the static shape, like Keras' "accuracy" metric does.
    """
    shape = tuple(y.shape) if y.shape is not None else None
    return (
        shape is not None
        and len(shape) >= 2
        and shape[-1] == num_classes
        and num_classes > 1
    )


def to_one_hot(y, num_classes, dtype="float32", validate=True):
    """Returns float one-hot targets `(batch, num_classes)` for labels `y`.

    Args:
        y: class ids `(batch,)` or `(batch, 1)`, integer or integer-valued
            float; or one-hot / probability rows `(batch, num_classes)`,
            returned as they are (cast to `dtype`).
        num_classes: int.
        dtype: dtype of the result.
        validate: check that class ids lie in `[0, num_classes)`; on
            TensorFlow the check runs inside the compiled step (a
            `tf.debugging` assertion); other backends cannot assert inside
            a compiled step, and rely on the data checks of fit/evaluate.
    """
    y = ops.convert_to_tensor(y)
    if is_one_hot(y, num_classes):
        return ops.cast(y, dtype)
    if len(y.shape) >= 2:
        if y.shape[-1] != 1:
            raise ValueError(
                f"Labels of shape {tuple(y.shape)} fit neither class ids "
                f"(batch,) / (batch, 1) nor one-hot rows (batch, {num_classes})."
            )
        y = ops.squeeze(y, axis=-1)
    ids = ops.cast(y, "int32")
    if validate and keras.backend.backend() == "tensorflow":
        ids = _checked_ids(ids, num_classes)
    return ops.one_hot(ids, num_classes, dtype=dtype)


def _checked_ids(ids, num_classes):
    import tensorflow as tf

    checks = [
        tf.debugging.assert_non_negative(ids, message="Class ids must be >= 0."),
        tf.debugging.assert_less(
            ids, tf.constant(num_classes, tf.int32),
            message=f"Class ids must be < num_classes={num_classes}."),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(ids)


@keras.saving.register_keras_serializable(package="al_keras")
class ClassificationCrossentropy(keras.losses.Loss):
    """Cross-entropy on probabilities for class-id or one-hot labels.

    The default loss of :class:`al_keras.BPModel`, so that the same
    `compile(optimizer, metrics=["accuracy"])` trains the AL model and its BP
    twin on the same labels, whichever form they take.

    Args:
        num_classes: int, width of the predictions.
        **kwargs: `keras.losses.Loss` arguments (`name`, `reduction`, ...).
    """

    def __init__(self, num_classes, name="classification_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        targets = to_one_hot(y_true, self.num_classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config
