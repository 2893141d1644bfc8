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

The train functions that run `position.steps` steps a call are the
trainers' (`trainers/tensorflow.py`: one traced `tf.while_loop`;
`trainers/jax.py`: a loop over the jitted step).  It relies on Keras 3.15
internals, named in `keras_compat.PRIVATE_NAMES`: fit hands its epoch
iterator to `_maybe_symbolic_build` (TensorFlow) or `_symbolic_build`
(JAX) first, and the iterator's `_enumerate_iterator` and `_steps_seen`;
tests/test_steps_per_execution.py checks the result on both backends.
"""


import keras

from al_keras.core import keras_compat


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

    def _follow_epoch(self, iterator):
        # Keras' fit hands its epoch iterator to its symbolic build first
        # (evaluate, later, its own).
        position = self._epoch_position()
        if iterator is not None and position.following:
            position.following = False
            _follow(iterator, position)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        self._follow_epoch(iterator)  # TensorFlow's fit.
        return super()._maybe_symbolic_build(iterator=iterator,
                                             data_batch=data_batch)

    def _symbolic_build(self, iterator=None, data_batch=None):
        if keras.backend.backend() == "jax":
            self._follow_epoch(iterator)  # JAX's fit.
        return super()._symbolic_build(iterator=iterator, data_batch=data_batch)

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        self.train_function = exact_train_function(self, self.train_step)
        return self.train_function


def exact_train_function(model, train_step):
    """The backend's train function of `model` around `train_step`, whose
    calls run the steps `fit`'s epoch has left (see the module doc)."""
    if keras.backend.backend() == "tensorflow":
        from al_keras.core.trainers import tensorflow as trainer
    else:
        from al_keras.core.trainers import jax as trainer
    return trainer.train_function(model, train_step)


def _taken(data, steps):
    """`data` cut to its first `steps` batches if it is a `tf.data.Dataset`."""
    if steps is None or not keras_compat.is_tf_dataset(data):
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
