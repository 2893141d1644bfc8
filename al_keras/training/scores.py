"""Test scores beyond accuracy: macro-F1 of every exit, for unbalanced classes.

Macro-F1 is the mean over the classes of each class's F1 (the harmonic
mean of its precision and recall); a class never predicted and absent from
the labels is left out, one never predicted but present counts 0.
"""

import numpy as np
import tensorflow as tf


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
        data: a dataset of `(x, y)` batches, labels as class ids or one-hot.
        num_classes: int.

    Returns:
        `{"accuracy": [...], "macro_f1": [...]}`, one entry per exit (the
        last is the full path), or one entry for a model without exits.
    """
    exits = getattr(model, "num_blocks", None)

    @tf.function
    def predict(x):
        if exits is None:
            return [tf.argmax(model(x, training=False), -1)]
        return [tf.argmax(p, -1) for p in model.call_exits(x).values()]

    counts = None
    for x, y in data:
        ids = y.numpy().argmax(-1) if len(y.shape) == 2 and y.shape[-1] > 1 else \
            y.numpy().reshape(-1)
        found = [confusion(ids, p.numpy(), num_classes) for p in predict(x)]
        counts = found if counts is None else [c + f for c, f in zip(counts, found)]
    counts = counts or [np.zeros((num_classes, num_classes), np.int64)]
    return {"accuracy": [float(np.trace(c) / max(c.sum(), 1)) for c in counts],
            "macro_f1": [macro_f1(c) for c in counts]}
