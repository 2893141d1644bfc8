"""Every private Keras name al_keras uses, and its workarounds for Keras 3.15.

al_keras reaches into Keras only here: each private name is listed in
`PRIVATE_NAMES` and read through a function of this module, and
`missing_private_names()` (tests/test_compatibility.py) fails loudly,
naming each one, when a Keras release moves them.  Each workaround names
the Keras behaviour it works around; drop one when Keras no longer needs it.
"""

import math
import re
import sys

import keras
import numpy as np

# (where, name): the private Keras names al_keras relies on, by backend
# ("any" for every backend).  `where` is a dotted path of a class or module.
PRIVATE_NAMES = (
    ("any", "keras.src.trainers.trainer.Trainer._compile_config"),
    ("any", "keras.src.trainers.trainer.Trainer._compile_metrics"),
    ("any", "keras.src.trainers.compile_utils.CompileMetrics._user_metrics"),
    ("any", "keras.src.models.model.Model._build_shapes_dict"),
    ("any", "keras.src.trainers.trainer.Trainer._symbolic_build"),
    ("any", "keras.src.trainers.epoch_iterator.EpochIterator._enumerate_iterator"),
    ("any", "keras.src.trainers.epoch_iterator.EpochIterator._steps_seen"),
    ("tensorflow", "keras.src.backend.tensorflow.trainer.reduce_per_replica"),
    ("tensorflow",
     "keras.src.backend.tensorflow.trainer.TensorFlowTrainer._maybe_symbolic_build"),
    ("tensorflow",
     "keras.src.backend.tensorflow.trainer.TensorFlowTrainer._autoconvert_optionals"),
    ("tensorflow", "keras.src.trainers.trainer.Trainer._distribute_strategy"),
    ("jax", "keras.src.backend.jax.trainer.JAXTrainer._get_jax_state"),
    ("jax", "keras.src.backend.jax.trainer.JAXTrainer._jax_state"),
    ("jax", "keras.src.backend.jax.trainer.JAXTrainer._jax_state_synced"),
    ("jax", "keras.src.backend.jax.trainer.JAXTrainer._make_function"),
    ("any", "keras.src.backend.common.stateless_scope.in_stateless_scope"),
)


def missing_private_names(backend=None):
    """The names of `PRIVATE_NAMES` (of `backend`, default Keras' own) that
    this Keras does not have: [] when al_keras' reach into Keras still holds.

    An attribute set in `__init__` (not on the class) is looked for in the
    source of its class.
    """
    import importlib

    backend = backend or keras.backend.backend()
    missing = []
    for where, name in PRIVATE_NAMES:
        if where not in ("any", backend):
            continue
        parts = name.split(".")
        for split in range(len(parts) - 1, 0, -1):
            try:
                owner = importlib.import_module(".".join(parts[:split]))
                break
            except ImportError:
                continue
        else:
            missing.append(name)
            continue
        if not _has(owner, parts[split:]):
            missing.append(name)
    return missing


def _has(owner, attributes):
    """Whether `owner.a.b...` exists; an attribute a class sets in a method
    (`self.a = ...`) counts once its source (or a base's) says so."""
    import inspect

    for attribute in attributes:
        if hasattr(owner, attribute):
            owner = getattr(owner, attribute)
        else:
            return inspect.isclass(owner) and any(
                f"self.{attribute}" in _source(cls) for cls in owner.__mro__)
    return True


def _source(cls):
    import inspect

    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return ""


def built_input_shape(model):
    """The input shape a built model was built with (None if unknown)."""
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    return tuple(next(iter(shapes.values()))) if shapes else None


def compile_config(model):
    """The dict of `compile`'s arguments Keras saves with the model."""
    return model._compile_config.config


def user_metrics(model):
    """The metrics given to `compile` (an empty list if none)."""
    metrics = getattr(model, "_compile_metrics", None)
    return list(getattr(metrics, "_user_metrics", None) or []) if metrics else []


def compiled_metrics_built(model):
    """Whether the metrics given to `compile` are built (True if none)."""
    metrics = getattr(model, "_compile_metrics", None)
    return metrics is None or metrics.built


def symbolic_build(model, data_batch):
    """Keras' build of the model's compiled metrics from one batch."""
    model._symbolic_build(data_batch=data_batch)


def reduce_per_replica(values, strategy, reduction):
    """Keras' reduction of a `tf.distribute` step's outputs."""
    from keras.src.backend.tensorflow.trainer import reduce_per_replica as reduce

    return reduce(values, strategy, reduction=reduction)


def autoconvert_optionals(model, function):
    """Keras' wrapper turning a step's optional outputs into values."""
    return model._autoconvert_optionals(function)


def in_stateless_scope():
    """Whether Keras runs the caller inside a `keras.StatelessScope`."""
    from keras.src.backend.common.stateless_scope import in_stateless_scope as inside

    return inside()


def looped_step_function(model, step):
    """Keras' JAX function running `step` over `steps_per_execution` batches
    of an iterator a call."""
    return model._make_function(step)


def is_tf_dataset(data):
    """Whether `data` is a `tf.data.Dataset` (False when TensorFlow is not
    imported: then it cannot be one)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)


def replica_logs(model, logs):
    """A step's logs, as Keras can reduce them over the replicas.

    Keras 3.15 averages a step's logs over the workers of a
    `MultiWorkerMirroredStrategy` with `reduce("MEAN", axis=0)`, which
    fails on scalars (keras-team/keras#20585); there each log is given as a
    vector of one value.
    """
    if not _multi_worker(model.distribute_strategy):
        return logs
    return {k: keras.ops.reshape(v, [1]) for k, v in logs.items()}


def _multi_worker(strategy):
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy)


class KerasWorkaroundsMixin:
    """`ALModel`'s fixes of Keras' symbolic build under
    `MultiWorkerMirroredStrategy`, and of its summary's optimizer count."""

    def summary(self, *args, print_fn=None, **kwargs):
        """`keras.Model.summary`, counting every optimizer's variables.

        Keras 3.15 counts only `model.optimizer`'s (its step and learning
        rate: "Optimizer params: 2"); an ALModel's moments are in its 2L
        block optimizers, `assoc_optimizers` and `ae_optimizers`.  Here the
        optimizer and total lines count them too and say where they are.
        Printed as plain text, or handed whole to `print_fn`.
        """
        captured = []
        super().summary(*args, print_fn=lambda text, **_: captured.append(text), **kwargs)
        text = "".join(captured)
        block_variables = [v for o in self.assoc_optimizers + self.ae_optimizers
                           for v in o.variables]
        if block_variables and self.optimizer is not None and self.optimizer.built:
            text = _count_block_optimizers(text, list(self.weights),
                                           list(self.optimizer.variables),
                                           block_variables, self.num_blocks)
        if print_fn is None:
            print(text, end="" if text.endswith("\n") else "\n")
        else:
            print_fn(text)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' symbolic build, from one replica's batch.

        Keras 3.15 averages a distributed data batch over the replicas
        eagerly before building the compiled metrics symbolically; under
        `MultiWorkerMirroredStrategy` that fails ("Attempt to convert a value
        (PerReplica...)").  Only the batch's shapes matter, so one local
        replica's batch is used instead.
        """
        if iterator is not None and _multi_worker(self._distribute_strategy):
            tf = sys.modules["tensorflow"]
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: self.distribute_strategy
                    .experimental_local_results(v)[0],
                    next(it))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator,
                                             data_batch=data_batch)


class SumOfResults(keras.metrics.Metric):
    """A metric whose result is the sum of other metrics' results.

    The logged `loss` is the sum of the blocks' mean local losses; in a
    pipelined step the blocks work on different batches, so it is not
    tracked as a mean of per-step sums (which it equals otherwise).
    """

    def __init__(self, metrics, name="loss"):
        super().__init__(name=name)
        self._summed = Untracked(list(metrics))  # Tracked by the model.

    def update_state(self, *args, **kwargs):
        pass

    def result(self):
        total = 0.0
        for metric in self._summed.value:
            total = total + metric.result()
        return total

    def reset_state(self):
        pass

class Untracked:
    """Holds `value` out of Keras' attribute tracking."""

    def __init__(self, value):
        self.value = value


def _count_block_optimizers(text, weights, model_variables, block_variables, num_blocks):
    """Keras' summary `text` with its "Total params" and "Optimizer params"
    lines counting the model's `weights` and every optimizer's variables."""
    added, added_bytes = _count(block_variables), _bytes(block_variables)
    own, own_bytes = _count(model_variables), _bytes(model_variables)
    total, total_bytes = (_count(weights) + own + added,
                          _bytes(weights) + own_bytes + added_bytes)
    text = re.sub(r" Total params: [\d,]+ \([^)]*\)",
                  f" Total params: {total:,} ({_readable(total_bytes)})", text, count=1)
    return re.sub(
        r" Optimizer params: [\d,]+ \([^)]*\)",
        f" Optimizer params: {own + added:,} ({_readable(own_bytes + added_bytes)})\n"
        f"   {own:,} in model.optimizer, {added:,} in the {2 * num_blocks} block optimizers "
        "(model.assoc_optimizers, model.ae_optimizers)", text, count=1)


def _count(variables):
    return sum(math.prod(v.shape) for v in variables)


def _bytes(variables):
    return sum(math.prod(v.shape) * _itemsize(v.dtype) for v in variables)


def _itemsize(dtype):
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bfloat16":
        return 2
    return np.dtype(dtype).itemsize


_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def _readable(size):
    """Bytes as Keras' summary writes them: `4.66 MB` (1 KB = 1024 B)."""
    for unit in _UNITS[:-1]:
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} {_UNITS[-1]}"
