"""Workarounds for Keras 3.15 and tf.distribute that `ALModel` needs.

Each names the Keras behaviour it works around; drop one when Keras no
longer needs it.
"""

import math
import re

import keras
import tensorflow as tf


class KerasWorkaroundsMixin:
    """`ALModel`'s fixes of Keras' step logs and symbolic build under
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

    def _step_logs(self, logs):
        """The step's logs, as Keras can reduce them over the replicas.

        Keras 3.15 averages a step's logs over the workers of a
        `MultiWorkerMirroredStrategy` with `reduce("MEAN", axis=0)`, which
        fails on scalars (keras-team/keras#20585); there each log is given
        as a vector of one value.
        """
        if isinstance(self.distribute_strategy,
                      tf.distribute.MultiWorkerMirroredStrategy):
            return {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' symbolic build, from one replica's batch.

        Keras 3.15 averages a distributed data batch over the replicas
        eagerly before building the compiled metrics symbolically; under
        `MultiWorkerMirroredStrategy` that fails ("Attempt to convert a value
        (PerReplica...)").  Only the batch's shapes matter, so one local
        replica's batch is used instead.
        """
        if iterator is not None and isinstance(
                self._distribute_strategy,
                tf.distribute.MultiWorkerMirroredStrategy):
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
        return tf.add_n([m.result() for m in self._summed.value])

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
    return sum(math.prod(v.shape) * tf.as_dtype(v.dtype).size for v in variables)


_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def _readable(size):
    """Bytes as Keras' summary writes them: `4.66 MB` (1 KB = 1024 B)."""
    for unit in _UNITS[:-1]:
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} {_UNITS[-1]}"
