"""Workarounds for Keras 3.15 and tf.distribute that `ALModel` needs.

Each names the Keras behaviour it works around; drop one when Keras no
longer needs it.
"""

import keras
import tensorflow as tf


class KerasWorkaroundsMixin:
    """`ALModel`'s fixes of Keras' step logs and symbolic build under
    `MultiWorkerMirroredStrategy`."""

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
