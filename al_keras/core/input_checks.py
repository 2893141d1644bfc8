"""Checking what users feed `fit`, `evaluate` and `predict`, with clear errors.

`ALModel` and `BPModel` check their data before Keras sees it
(`CheckedDataMixin`):

* arrays and tensors are checked whole, before training starts: input
  shape, number of examples (not 0), finite features, token ids of a text
  model in `[0, vocabulary_size)`, labels that are
  class ids in `[0, num_classes)` (integers, or floats with integer values)
  or one-hot rows `(batch, num_classes)`;
* a `tf.data.Dataset` is checked statically (element shapes, an empty
  dataset) when `fit` starts, and each batch is checked in the input
  pipeline as it is read (a `map` before Keras' step, so also under XLA,
  which drops `tf.debugging` assertions inside the step);
* other inputs (generators, `PyDataset`, distributed datasets) go to Keras
  unchecked.

A failed check raises `InputDataError` (a `ValueError`) naming the problem,
e.g. ``Labels must be class ids in [0, 10); found 12.``  Pass
`check_data=False` to `fit` / `evaluate` / `predict` to skip the checks.
"""

import contextlib
import re

import numpy as np
import tensorflow as tf

from al_keras.core import labels as labels_lib

# Marks the messages of this module's in-pipeline assertions, so that the
# TensorFlow error raised from inside `fit` can be turned back into one line.
_MARK, _END = "al_keras input check: ", " @@"


class InputDataError(ValueError):
    """Data given to fit / evaluate / predict that cannot be used."""


def built_input_shape(model):
    """The input shape `(None, ...)` the model was built for, or None."""
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    shape = next(iter(shapes.values()), None)
    return None if shape is None else (None,) + tuple(shape)[1:]


class DataCheck:
    """The checks of one model: its input shape and its number of classes."""

    def __init__(self, model, caller):
        self.input_shape = built_input_shape(model)
        self.num_classes = model.num_classes
        self.caller = caller
        self.model_name = model.name
        self.vocabulary_size = getattr(model, "vocabulary_size", None)

    # ------------------------------------------------------- static checks
    def check_shape(self, shape):
        expected = self.input_shape
        if expected is None or shape is None:
            return
        shape = tuple(shape)
        if len(shape) != len(expected) or any(
                e is not None and s is not None and s != e
                for s, e in zip(shape[1:], expected[1:])):
            raise InputDataError(
                f"{self.caller}: model {self.model_name!r} takes inputs of shape "
                f"{_shape_text(expected)}, got "
                f"{_shape_text(shape)}. Reshape the data, or build a model for "
                "this shape.")

    def check_label_shape(self, shape):
        if shape is None or len(shape) < 2:
            return
        if len(shape) > 2 or shape[-1] not in (1, self.num_classes, None):
            raise InputDataError(
                f"{self.caller}: labels of shape {_shape_text(shape)} are neither "
                f"class ids (batch,) / (batch, 1) nor one-hot rows (batch, "
                f"{self.num_classes}).")

    def check_examples(self, count):
        if count == 0:
            raise InputDataError(f"{self.caller}: the data holds no examples.")

    # -------------------------------------------------------- value checks
    def assertions(self, x, y=None):
        """In-graph checks of one batch (or whole arrays); each fails with a
        message built only when it fails."""
        checks = []
        if x.dtype.is_floating:
            finite = tf.math.is_finite(x)
            checks.append(_check(tf.reduce_all(finite), lambda: _message(
                f"{self.caller}: input features hold NaN or Inf ({{}} of them); "
                "clean the data, or pass check_data=False to skip this check.",
                tf.reduce_sum(tf.cast(~finite, tf.int64)))))
        if self.vocabulary_size:
            ids = tf.cast(tf.reshape(x, [-1]), tf.float64)
            bad = (ids < 0) | (ids >= self.vocabulary_size) | (ids != tf.round(ids))
            checks.append(_check(~tf.reduce_any(bad), lambda: _message(
                f"{self.caller}: token ids must be integers in [0, "
                f"{self.vocabulary_size}) (the model's vocabulary; 0 is padding), "
                "found {}. Vectorize the text with the model's preprocessor.",
                tf.boolean_mask(ids, bad)[0])))
        if y is not None and not labels_lib.is_one_hot(y, self.num_classes):
            ids = tf.reshape(y, [-1])
            if ids.dtype.is_floating:
                fraction = tf.not_equal(ids, tf.round(ids))
                checks.append(_check(~tf.reduce_any(fraction), lambda: _message(
                    f"{self.caller}: labels must be class ids in "
                    f"[0, {self.num_classes}), found the float {{}}. Give "
                    f"integer ids, or one-hot rows (batch, {self.num_classes}).",
                    tf.boolean_mask(ids, fraction)[0])))
            ids = tf.cast(ids, tf.float64)
            bad = (ids < 0) | (ids >= self.num_classes)
            checks.append(_check(~tf.reduce_any(bad), lambda: _message(
                f"{self.caller}: labels must be class ids in [0, "
                f"{self.num_classes}) (num_classes={self.num_classes}), found {{}}.",
                tf.boolean_mask(ids, bad)[0])))
        return checks

    def check_arrays(self, x, y=None):
        x = tf.convert_to_tensor(x)
        self.check_shape(x.shape)
        self.check_examples(int(x.shape[0]))
        if y is not None:
            y = tf.convert_to_tensor(y)
            self.check_label_shape(y.shape)
        with raising_input_errors():
            self.assertions(x, y)

    def checked_dataset(self, dataset):
        spec = dataset.element_spec
        x_spec, y_spec = _split(spec)
        if isinstance(x_spec, tf.TensorSpec):
            self.check_shape(x_spec.shape)
        if isinstance(y_spec, tf.TensorSpec):
            self.check_label_shape(y_spec.shape)
        if int(dataset.cardinality()) == 0:
            self.check_examples(0)
        if not isinstance(x_spec, tf.TensorSpec) or (
                y_spec is not None and not isinstance(y_spec, tf.TensorSpec)):
            return dataset  # Dicts and nests: left to Keras.

        def check(*element):
            x, y = _split(element)
            with tf.control_dependencies(self.assertions(x, y)):
                return tf.nest.map_structure(tf.identity, element)

        # Ahead of the step, in tf.data's threads; a failure still surfaces
        # at its batch (the order is kept).
        return dataset.map(check, num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True).prefetch(tf.data.AUTOTUNE)


def _split(element):
    """(x, y) of an element `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`."""
    if isinstance(element, tuple):
        return element[0], (element[1] if len(element) > 1 else None)
    return element, None


def _check(ok, message):
    """Fails (InvalidArgumentError) with `message()` unless `ok`; the message
    is computed only then."""
    def fail():
        with tf.control_dependencies([tf.debugging.Assert(False, [message()])]):
            return tf.constant(False)

    return tf.cond(ok, lambda: tf.constant(True), fail)


def _shape_text(shape):
    return "(" + ", ".join("batch" if i == 0 else str(d) for i, d in
                           enumerate(shape)) + ("," if len(shape) == 1 else "") + ")"


def _message(template, value):
    return tf.strings.format(_MARK + template + _END, [value], summarize=1)


@contextlib.contextmanager
def raising_input_errors():
    """Turns this module's failed in-graph assertions into `InputDataError`."""
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        match = re.search(re.escape(_MARK) + "(.*?)" + re.escape(_END), str(e), re.S)
        if match is None:
            raise
        raise InputDataError(match.group(1)) from None


def _is_array(value):
    return isinstance(value, (np.ndarray, tf.Tensor)) or (
        hasattr(value, "__array__") and hasattr(value, "shape")
        and not isinstance(value, tf.data.Dataset))


class CheckedDataMixin:
    """`fit`, `evaluate` and `predict` that check their data first
    (see the module docstring); `check_data=False` skips the checks."""

    def _checked(self, caller, x, y):
        check = DataCheck(self, caller)
        if isinstance(x, tf.data.Dataset):
            return check.checked_dataset(x), y
        if _is_array(x) and (y is None or _is_array(y)):
            check.check_arrays(x, y)
        return x, y

    def fit(self, x=None, y=None, *args, check_data=True, **kwargs):
        if check_data:
            x, y = self._checked("fit", x, y)
            validation = kwargs.get("validation_data")
            if isinstance(validation, tf.data.Dataset):
                kwargs["validation_data"], _ = self._checked(
                    "fit (validation_data)", validation, None)
            elif isinstance(validation, (tuple, list)) and len(validation) >= 2:
                self._checked("fit (validation_data)", *validation[:2])
        with raising_input_errors():
            return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, check_data=True, **kwargs):
        # fit's validation (a cached, already checked dataset) is not redone.
        if check_data and not kwargs.get("_use_cached_eval_dataset"):
            x, y = self._checked("evaluate", x, y)
        with raising_input_errors():
            return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, check_data=True, **kwargs):
        if check_data:
            x, _ = self._checked("predict", x, None)
        with raising_input_errors():
            return super().predict(x, *args, **kwargs)

