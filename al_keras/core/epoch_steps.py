"""Exactly the epoch's steps an epoch, whatever `steps_per_execution`.

Keras 3.15's fit loop calls the train function ceil(S / N) times an epoch of
S steps, with `steps_per_execution` N, and each call runs N steps: with
`steps_per_epoch` over an endless dataset (`al_keras.data`'s `train_epochs`)
the epoch's last call trained the first batches of the next epoch (S = 45,
N = 8: 48 steps), and the callbacks were told batch 47 of 45.

`ExactEpochStepsMixin` (of `ALModel` and `BPModel`) clips the epoch's last
call to the S mod N steps that remain.  `fit` follows Keras' epoch iterator
(`_follow`: how many steps each call has, the batch indices the callbacks
see, the batches Keras counts as read), and the train function takes the
number of steps of its call as a tensor, so one traced loop (and one XLA
compilation of the step) serves calls of any length.  A step runs only on a
batch that was read, also with N = 1 (Keras' own step there ran an
optimizer's step count on when it found the end of data of unknown length).
A `RayPipeline` has its own train function, which clips the same way.
`evaluate(steps=)`, `predict(steps=)` and fit's `validation_steps` read
exactly `steps` batches of a dataset too (Keras read whole calls past them).

It relies on Keras 3.15 internals: fit hands its epoch iterator to
`_maybe_symbolic_build` first, and the iterator's `_enumerate_iterator`
and `_steps_seen`; tests/test_steps_per_execution.py checks the result.
"""

import tensorflow as tf
from keras.src.backend.tensorflow.trainer import reduce_per_replica


class _Position:
    """How many steps the coming call of the train function has (None: out
    of `fit`, `steps_per_execution`); `following`: `fit` has begun and its
    epoch iterator is not yet followed."""

    def __init__(self):
        self.steps = None
        self.following = False


class ExactEpochStepsMixin:
    """`fit` trains exactly the epoch's steps (`steps_per_epoch`, or the
    data's batches) an epoch, for any `steps_per_execution`."""

    def _epoch_position(self):
        position = self.__dict__.get("_al_epoch_position")
        if position is None:
            position = _Position()
            self.__dict__["_al_epoch_position"] = position  # Untracked.
        return position

    def fit(self, *args, **kwargs):
        if kwargs.get("validation_data") is not None:
            kwargs["validation_data"] = _taken(kwargs["validation_data"],
                                               kwargs.get("validation_steps"))
        position = self._epoch_position()
        position.following = True
        try:
            return super().fit(*args, **kwargs)
        finally:
            position.following, position.steps = False, None

    # Keras' evaluate and predict read `steps_per_execution` batches a call
    # too, past `steps` (predict(steps=45) of an endless dataset, 8 a call,
    # returned 48 batches' rows): a dataset is cut to `steps` batches, where
    # their loops stop as at any dataset's end.
    def evaluate(self, x=None, y=None, *args, steps=None, **kwargs):
        return super().evaluate(_taken(x, steps), y, *args, steps=steps, **kwargs)

    def predict(self, x, *args, steps=None, **kwargs):
        return super().predict(_taken(x, steps), *args, steps=steps, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' fit hands its epoch iterator here first (evaluate, later,
        # its own).
        position = self._epoch_position()
        if iterator is not None and position.following:
            position.following = False
            _follow(iterator, position)
        return super()._maybe_symbolic_build(iterator=iterator,
                                             data_batch=data_batch)

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        self.train_function = _train_function(self, self._epoch_position())
        return self.train_function


def _taken(data, steps):
    """`data` cut to its first `steps` batches if it is a `tf.data.Dataset`."""
    if steps is None or not isinstance(data, tf.data.Dataset):
        return data
    return data.take(int(steps))


def _follow(epoch_iterator, position):
    """Clips the calls that Keras' `epoch_iterator` makes to its epoch.

    Each call it yields as `(first batch, last batch, iterator)` has
    `steps_per_execution` batches; the last of an epoch of known length
    (`num_batches`) is cut to the batches that remain, and Keras' count of
    the batches read (`_steps_seen`, which decides when a finite dataset is
    read again from its start) follows.
    """
    enumerate_epoch = epoch_iterator._enumerate_iterator

    def clipped():
        for first, last, iterator in enumerate_epoch():
            length = epoch_iterator.num_batches
            if length and last >= length:
                epoch_iterator._steps_seen -= last - (length - 1)
                last = length - 1
            position.steps = last - first + 1
            yield first, last, iterator

    epoch_iterator._enumerate_iterator = clipped


def _train_function(model, position):
    """Keras' train function, whose calls run `position.steps` steps
    (default `model.steps_per_execution`), or fewer where the data ends.

    The steps run in one `tf.while_loop` whose bound is a tensor argument,
    so calls of different lengths share one trace.  A step runs only on a
    batch that was read (`get_next_as_optional`): a call on exhausted data
    changes nothing (not even an optimizer's step count) and ends the epoch.
    """

    @tf.autograph.experimental.do_not_convert
    def one_step_on_data(data):
        outputs = model.distribute_strategy.run(model.train_step, args=(data,))
        return reduce_per_replica(outputs, model.distribute_strategy,
                                  reduction="auto")

    if not model.run_eagerly:
        one_step_on_data = tf.function(one_step_on_data, reduce_retracing=True,
                                       jit_compile=model.jit_compile)
    one_step = model._autoconvert_optionals(one_step_on_data)

    @tf.autograph.experimental.do_not_convert
    def multi_step_on_iterator(iterator, steps):
        # The loop's outputs start empty; as in Keras' own loop, their spec
        # is that of the step's outputs, known once the body is traced.
        empty = tf.experimental.Optional.empty(None)

        def more(done, outputs, inputs):
            return tf.logical_and(done < steps, inputs.has_value())

        def step(done, outputs, inputs):
            outputs = tf.experimental.Optional.from_value(one_step(inputs.get_value()))
            empty._element_spec = outputs.element_spec
            # Read no batch beyond the call's last.
            inputs = tf.cond(done + 1 < steps, iterator.get_next_as_optional,
                             lambda: inputs)
            return done + 1, outputs, inputs

        _, outputs, _ = tf.while_loop(
            more, step, (tf.constant(0), empty, iterator.get_next_as_optional()))
        outputs._element_spec = empty.element_spec
        return outputs

    if not model.run_eagerly:
        multi_step_on_iterator = tf.function(multi_step_on_iterator,
                                             reduce_retracing=True)

    def function(iterator):
        steps = position.steps or model.steps_per_execution
        if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
            outputs = multi_step_on_iterator(iterator, tf.constant(steps, "int32"))
            if not outputs.has_value():
                raise StopIteration
            return outputs.get_value()
        outputs = None  # A Python iterator of batches (`train_on_batch`).
        for _, data in zip(range(steps), iterator):
            outputs = one_step(data)
        return outputs

    function.multi_step = multi_step_on_iterator
    function.one_step = one_step_on_data
    return function
