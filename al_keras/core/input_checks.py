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
  unchecked;
* strings given to a model of numbers or token ids, Python lists, missing
  labels, `x` and `y` (or `sample_weight`) of different lengths, sample
  weights that are negative or not finite, `class_weight` naming unknown
  classes, and `batch_size` / `validation_split` / `validation_data` that
  cannot be used are refused before Keras sees them.

`labelled_batches` gives the loops over `(x, y)` batches outside Keras'
`fit` (`al_keras.exits.calibrate`, `evaluate_at`, `ALModel.evaluate_exits`)
the same checks, and batches arrays `(x, y)` as `evaluate` does.

A failed check raises `InputDataError` (a `ValueError`) naming the problem,
e.g. ``Labels must be class ids in [0, 10); found 12.``  Pass
`check_data=False` to `fit` / `evaluate` / `predict` to skip the checks.
"""

import contextlib
import re

import numpy as np

from al_keras.core import keras_compat
from al_keras.core import labels as labels_lib

try:  # tf.data and in-graph checks where TensorFlow is installed.
    import tensorflow as tf
except ImportError:  # The JAX-only install: arrays are checked in NumPy.
    tf = None

# Marks the messages of this module's in-pipeline assertions, so that the
# TensorFlow error raised from inside `fit` can be turned back into one line.
_MARK, _END = "al_keras input check: ", " @@"


# What the loops of `labelled_batches` say of data without examples.
EMPTY = "the data holds no batch (no examples)."


class InputDataError(ValueError):
    """Data given to fit / evaluate / predict that cannot be used."""


def built_input_shape(model):
    """The input shape `(None, ...)` the model was built for, or None."""
    shape = keras_compat.built_input_shape(model)
    return None if shape is None else (None,) + tuple(shape)[1:]


class DataCheck:
    """The checks of one model: its input shape and its number of classes."""

    def __init__(self, model, caller, skippable=True):
        self.input_shape = built_input_shape(model)
        self.num_classes = model.num_classes
        self.caller = caller
        self.model_name = model.name
        self.vocabulary_size = getattr(model, "vocabulary_size", None)
        self.has_preprocessor = getattr(model, "preprocessor", None) is not None
        # Where the caller takes `check_data` (fit, evaluate, predict), the
        # way to skip a check; the loops of `labelled_batches` do not.
        self.skip_hint = ", or pass check_data=False to skip this check" if skippable else ""
        self.empty = "the data holds no examples." if skippable else EMPTY

    # ------------------------------------------------------- static checks
    def check_dtypes(self, x_dtype, y_dtype=None):
        """Refuses strings: raw text for a text model (pointing to its
        preprocessor), any for a model of numbers, and as labels."""
        if _is_string(x_dtype):
            if self.vocabulary_size:
                how = ("with model.preprocessor(texts)" if self.has_preprocessor else
                       "(e.g. with an adapted keras.layers.TextVectorization)")
                raise InputDataError(
                    f"{self.caller}: model {self.model_name!r} got strings; a text model "
                    f"takes token ids {_shape_text(self.input_shape or (None,))}: "
                    f"vectorize the texts {how} first.")
            raise InputDataError(
                f"{self.caller}: model {self.model_name!r} takes numbers of shape "
                f"{_shape_text(self.input_shape or (None,))}, got strings.")
        if _is_string(y_dtype):
            raise InputDataError(
                f"{self.caller}: labels must be class ids in [0, {self.num_classes}) or "
                f"one-hot rows (batch, {self.num_classes}), got strings.")

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
            raise InputDataError(f"{self.caller}: {self.empty}")

    # -------------------------------------------------------- value checks
    def assertions(self, x, y=None):
        """In-graph checks of one batch (or whole arrays); each fails with a
        message built only when it fails."""
        checks = []
        if x.dtype.is_floating:
            finite = tf.math.is_finite(x)
            checks.append(_check(tf.reduce_all(finite), lambda: _message(
                f"{self.caller}: input features hold NaN or Inf ({{}} of them); "
                f"clean the data{self.skip_hint}.",
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

    def weight_assertions(self, sample_weight):
        """In-graph check of one batch's sample weights: finite, >= 0."""
        weights = tf.cast(tf.reshape(sample_weight, [-1]), tf.float64)
        bad = ~tf.math.is_finite(weights) | (weights < 0)
        return [_check(~tf.reduce_any(bad), lambda: _message(
            f"{self.caller}: sample_weight must be finite numbers >= 0, found {{}}.",
            tf.boolean_mask(weights, bad)[0]))]

    def numpy_checks(self, x, y=None):
        """`assertions` of whole NumPy arrays, where TensorFlow is absent."""
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise InputDataError(
                f"{self.caller}: input features hold NaN or Inf "
                f"({int((~np.isfinite(x)).sum())} of them); clean the data{self.skip_hint}.")
        if self.vocabulary_size:
            ids = x.reshape(-1).astype("float64")
            bad = (ids < 0) | (ids >= self.vocabulary_size) | (ids != np.round(ids))
            if bad.any():
                raise InputDataError(
                    f"{self.caller}: token ids must be integers in [0, "
                    f"{self.vocabulary_size}) (the model's vocabulary; 0 is padding), "
                    f"found {_number(ids[bad][0])}. Vectorize the text with the "
                    "model's preprocessor.")
        if y is not None and not labels_lib.is_one_hot(y, self.num_classes):
            ids = y.reshape(-1)
            if ids.dtype.kind == "f" and (ids != np.round(ids)).any():
                raise InputDataError(
                    f"{self.caller}: labels must be class ids in "
                    f"[0, {self.num_classes}), found the float "
                    f"{_number(ids[ids != np.round(ids)][0])}. Give "
                    f"integer ids, or one-hot rows (batch, {self.num_classes}).")
            ids = ids.astype("float64")
            bad = (ids < 0) | (ids >= self.num_classes)
            if bad.any():
                raise InputDataError(
                    f"{self.caller}: labels must be class ids in [0, "
                    f"{self.num_classes}) (num_classes={self.num_classes}), found "
                    f"{_number(ids[bad][0])}.")

    def check_arrays(self, x, y=None, sample_weight=None):
        if tf is None:
            x, y = np.asarray(x), None if y is None else np.asarray(y)
            self._check_array_shapes(x, y, sample_weight)
            self.numpy_checks(x, y)
            return
        x, y = tf.convert_to_tensor(x), None if y is None else tf.convert_to_tensor(y)
        self._check_array_shapes(x, y, sample_weight)
        with raising_input_errors():
            self.assertions(x, y)

    def _check_array_shapes(self, x, y, sample_weight):
        self.check_dtypes(x.dtype, None if y is None else y.dtype)
        self.check_shape(x.shape)
        count = int(x.shape[0])
        self.check_examples(count)
        if y is not None:
            self.check_label_shape(y.shape)
            if int(y.shape[0]) != count:
                raise InputDataError(
                    f"{self.caller}: x holds {count} examples but y {int(y.shape[0])} "
                    "labels; give one label per example.")
        if sample_weight is not None:
            self.check_sample_weight(sample_weight, count)

    def check_sample_weight(self, sample_weight, count):
        weights = np.asarray(sample_weight)
        if weights.dtype.kind not in "biuf" or weights.ndim not in (1, 2) or (
                weights.ndim == 2 and weights.shape[1] != 1) or len(weights) != count:
            raise InputDataError(
                f"{self.caller}: sample_weight must hold one number per example, shape "
                f"({count},), got {weights.dtype.name} of shape {weights.shape}.")
        bad = ~np.isfinite(weights) | (weights < 0)
        if bad.any():
            raise InputDataError(
                f"{self.caller}: sample_weight must be finite numbers >= 0, found "
                f"{weights.reshape(-1)[bad.reshape(-1)][0]}.")

    def checked_dataset(self, dataset):
        spec = dataset.element_spec
        x_spec, y_spec = _split(spec)
        if isinstance(x_spec, tf.TensorSpec):
            self.check_dtypes(x_spec.dtype,
                              y_spec.dtype if isinstance(y_spec, tf.TensorSpec) else None)
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
            checks = self.assertions(x, y)
            if len(element) > 2 and tf.is_tensor(element[2]):
                checks += self.weight_assertions(element[2])
            with tf.control_dependencies(checks):
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


def _number(value):
    """A value as the in-graph messages print it: 12 for 12.0."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _shape_text(shape):
    return "(" + ", ".join("batch" if i == 0 else str(d) for i, d in
                           enumerate(shape)) + ("," if len(shape) == 1 else "") + ")"


def _message(template, value):
    return tf.strings.format(_MARK + template + _END, [value], summarize=1)


@contextlib.contextmanager
def raising_input_errors():
    """Turns this module's failed in-graph assertions into `InputDataError`."""
    if tf is None:
        yield
        return
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        match = re.search(re.escape(_MARK) + "(.*?)" + re.escape(_END), str(e), re.S)
        if match is None:
            raise
        # The iterator of a dataset hands the message back with quotes escaped.
        message = match.group(1).replace("\\'", "'").replace('\\"', '"')
        raise InputDataError(message) from None


def _is_array(value):
    return isinstance(value, np.ndarray) or (tf is not None and isinstance(
        value, tf.Tensor)) or (
        hasattr(value, "__array__") and hasattr(value, "shape")
        and not keras_compat.is_tf_dataset(value))


def _is_string(dtype):
    if dtype is None:
        return False
    if tf is not None:
        return tf.as_dtype(dtype) == tf.string
    return dtype == "string" or np.dtype(dtype).kind in "SUO"


def _plain_list(caller, name, value):
    """Refuses a Python list or tuple where Keras takes arrays (its own error
    prints the whole list); a list of strings is text."""
    if not isinstance(value, (list, tuple)) or not value:
        return
    if name == "x" and all(isinstance(v, (str, bytes)) for v in value):
        return  # Checked as an array of strings: the text message.
    raise InputDataError(
        f"{caller}: {name} is a Python {type(value).__name__}; give a NumPy array "
        f"(np.asarray({name})), a tensor, or a tf.data.Dataset.")


def check_arguments(model, caller, kwargs):
    """The arguments of `fit` / `evaluate` / `predict` that travel with the
    data: `batch_size`, `validation_split`, `class_weight`."""
    batch_size = kwargs.get("batch_size")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1):
        raise InputDataError(f"{caller}: batch_size must be an int >= 1 (or None: 32), "
                             f"got {batch_size!r}.")
    split = kwargs.get("validation_split")
    if split is not None and (isinstance(split, bool) or not isinstance(
            split, (int, float, np.number)) or not 0 <= split < 1):
        raise InputDataError(f"{caller}: validation_split must be a number in [0, 1) "
                             f"(the fraction of x held out), got {split!r}.")
    class_weight = kwargs.get("class_weight")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise InputDataError(
                f"{caller}: class_weight must be a dict class id -> weight, got "
                f"{type(class_weight).__name__}.")
        for key, value in class_weight.items():
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not (
                    0 <= key < model.num_classes):
                raise InputDataError(
                    f"{caller}: class_weight names class {key!r}; classes are ints in "
                    f"[0, {model.num_classes}) (num_classes={model.num_classes}).")
            if isinstance(value, bool) or not isinstance(
                    value, (int, float, np.number)) or not 0 <= value < np.inf:
                raise InputDataError(
                    f"{caller}: class_weight[{key}] must be a finite number >= 0, got "
                    f"{value!r}.")


def labelled_batches(model, caller, data, batch_size=32):
    """`data` as `(x, y)` batches, checked as `fit` / `evaluate` check theirs.

    For the loops over labelled data outside Keras' `fit` / `evaluate`
    (`al_keras.exits.calibrate`, `evaluate_at`, `ALModel.evaluate_exits`):

    * a `tf.data.Dataset` of `(x, y)` batches: checked statically now and
      batch by batch as it is read, as in `fit`;
    * a tuple `(x, y)` of arrays: checked whole now, then read in batches of
      `batch_size` (as `evaluate` reads arrays);
    * another iterable of `(x, y)` batches (a list, a generator): each batch
      checked whole as it is read.

    A failed check raises `InputDataError` (during the loop for a dataset's
    values and the batches of an iterable).
    """
    check = DataCheck(model, caller, skippable=False)
    if keras_compat.is_tf_dataset(data):
        x_spec, y_spec = _split(data.element_spec)
        if y_spec is None:
            raise InputDataError(
                f"{caller}: the dataset holds no labels; give (x, y) batches.")
        return _raising_input_errors(check.checked_dataset(data))
    if isinstance(data, (tuple, list)) and len(data) == 2 and _is_array(data[0]):
        x, y = data
        _plain_list(caller, "x", x)
        _plain_list(caller, "y", y)
        check.check_arrays(x, y)
        if tf is None:
            return ((x[i:i + batch_size], y[i:i + batch_size])
                    for i in range(0, len(x), batch_size))
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    if isinstance(data, tuple) and data and all(_is_array(v) for v in data):
        raise InputDataError(f"{caller}: data must be a tuple (x, y) of arrays, got a "
                             f"tuple of {len(data)} arrays.")
    if _is_array(data) or isinstance(data, (str, bytes, dict)) or not hasattr(
            data, "__iter__"):
        raise InputDataError(
            f"{caller}: data must be a tuple (x, y) of arrays, a tf.data.Dataset of "
            f"(x, y) batches, or an iterable of them; got {type(data).__name__}"
            + (" (features without labels)." if _is_array(data) else "."))
    return _checked_batches(check, data)


def _checked_batches(check, batches):
    for index, batch in enumerate(batches, start=1):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise InputDataError(
                f"{check.caller}: batch {index} is a {type(batch).__name__}, not an "
                "(x, y) pair.")
        check.check_arrays(batch[0], batch[1])
        yield batch[0], batch[1]


def _raising_input_errors(batches):
    with raising_input_errors():
        yield from batches


class CheckedDataMixin:
    """`fit`, `evaluate` and `predict` that check their data first
    (see the module docstring); `check_data=False` skips the checks."""

    def _checked(self, caller, x, y, sample_weight=None, labelled=False):
        check = DataCheck(self, caller)
        if keras_compat.is_tf_dataset(x):
            return check.checked_dataset(x), y
        if x is None and (y is not None or caller == "predict"):
            raise InputDataError(f"{caller}: x is missing; give {caller.split()[0]}(x"
                                 + (")." if caller == "predict" else ", y)."))
        _plain_list(caller, "x", x)
        _plain_list(caller, "y", y)
        if isinstance(x, (list, tuple)) and x:  # Strings: the text message.
            check.check_dtypes("string")
        if _is_array(x) and y is None and labelled:
            raise InputDataError(f"{caller}: the labels y are missing; give "
                                 f"{caller.split()[0]}(x, y), or a dataset of (x, y) "
                                 "batches.")
        if _is_array(x) and (y is None or _is_array(y)):
            check.check_arrays(x, y, sample_weight)
        return x, y

    def _checked_validation(self, kwargs):
        caller = "fit (validation_data)"
        validation = kwargs.get("validation_data")
        if validation is None:
            return
        if keras_compat.is_tf_dataset(validation):
            kwargs["validation_data"], _ = self._checked(caller, validation, None)
        elif isinstance(validation, (tuple, list)) and len(validation) in (2, 3):
            self._checked(caller, *validation[:2],
                          sample_weight=validation[2] if len(validation) == 3 else None,
                          labelled=True)
        elif _is_array(validation) or isinstance(validation, (tuple, list)):
            raise InputDataError(
                f"{caller}: validation_data must be (x, y), (x, y, sample_weight) or a "
                f"dataset of (x, y) batches; got "
                + (f"a {type(validation).__name__} of {len(validation)} item(s)."
                   if isinstance(validation, (tuple, list)) else "features without labels."))

    def fit(self, x=None, y=None, *args, check_data=True, **kwargs):
        if check_data:
            check_arguments(self, "fit", kwargs)
            x, y = self._checked("fit", x, y, kwargs.get("sample_weight"), labelled=True)
            self._checked_validation(kwargs)
        with raising_input_errors():
            return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, check_data=True, **kwargs):
        # fit's validation (a cached, already checked dataset) is not redone.
        if check_data and not kwargs.get("_use_cached_eval_dataset"):
            check_arguments(self, "evaluate", kwargs)
            x, y = self._checked("evaluate", x, y, kwargs.get("sample_weight"),
                                 labelled=True)
        with raising_input_errors():
            return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, check_data=True, **kwargs):
        if check_data:
            check_arguments(self, "predict", kwargs)
            x, _ = self._checked("predict", x, None)
        with raising_input_errors():
            return super().predict(x, *args, **kwargs)
