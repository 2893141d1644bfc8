"""Test scores beyond accuracy: macro-F1 of every exit, for unbalanced classes.

Macro-F1 is the mean over the classes of each class's F1 (the harmonic
mean of its precision and recall); a class never predicted and absent from
the labels is left out, one never predicted but present counts 0.
"""

import keras
import numpy as np


def confusion(labels, predictions, num_classes):
    """`(num_classes, num_classes)` counts, row = label, column = prediction."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return counts


def macro_f1(counts):
    """Macro-F1 of a confusion matrix (see the module doc)."""
    counts = np.asarray(counts, np.float64)
    true_positive = np.diag(counts)
    labelled, predicted = counts.sum(axis=1), counts.sum(axis=0)
    present = (labelled + predicted) > 0
    f1 = np.divide(2 * true_positive, labelled + predicted,
                   out=np.zeros_like(true_positive), where=present)
    return float(f1[present].mean()) if present.any() else 0.0


def test_scores(model, data, num_classes):
    """Accuracy and macro-F1 of `model` on `data`, at every exit of an AL model.

    Args:
        model: an `ALModel` (every exit, from one pass of the encoders) or
            another classifier (one output).
        data: a dataset of `(x, y)` batches, labels as class ids or one-hot:
            a `tf.data.Dataset`, a `keras.utils.PyDataset`, or another
            iterable of them.
        num_classes: int.

    Returns:
        `{"accuracy": [...], "macro_f1": [...]}`, one entry per exit (the
        last is the full path), or one entry for a model without exits.
    """
    if keras.backend.backend() == "tensorflow":
        counts = _tensorflow_counts(model, data, num_classes)
    else:
        counts = _counts(model, data, num_classes)
    counts = counts or [np.zeros((num_classes, num_classes), np.int64)]
    return {"accuracy": [float(np.trace(c) / max(c.sum(), 1)) for c in counts],
            "macro_f1": [macro_f1(c) for c in counts]}


def _class_ids(y):
    y = np.asarray(y)
    return y.argmax(-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)


def _tensorflow_counts(model, data, num_classes):
    """The confusion matrices of every exit, from a `tf.function` of a batch."""
    import tensorflow as tf

    exits = getattr(model, "num_blocks", None)

    @tf.function
    def predict(x):
        if exits is None:
            return [tf.argmax(model(x, training=False), -1)]
        return [tf.argmax(p, -1) for p in model.call_exits(x).values()]

    counts = None
    for x, y in data:
        ids = _class_ids(y)
        found = [confusion(ids, p.numpy(), num_classes) for p in predict(x)]
        counts = found if counts is None else [c + f for c, f in zip(counts, found)]
    return counts


def _counts(model, data, num_classes):
    """The confusion matrices of every exit, on any backend: an AL model's
    exits from `al_keras.exits.exit_outputs` (one pass), another model's
    predictions from `predict_on_batch`."""
    if getattr(model, "num_blocks", None) is not None:
        from al_keras.core import early_exit

        probabilities, labels = early_exit.exit_outputs(model, data, caller="test_scores")
        predictions = probabilities.argmax(-1)  # (examples, exits)
        return [confusion(labels, predictions[:, i], num_classes)
                for i in range(predictions.shape[1])]
    counts = None
    for x, y in data:
        found = confusion(_class_ids(y), np.asarray(keras.ops.convert_to_numpy(
            model.predict_on_batch(x))).argmax(-1), num_classes)
        counts = [found] if counts is None else [counts[0] + found]
    return counts
