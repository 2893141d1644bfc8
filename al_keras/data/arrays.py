"""The datasets that need no TensorFlow, as NumPy batches (`keras.utils.PyDataset`).

`datasets.load` builds these where TensorFlow is not installed (Keras'
JAX backend), or when asked with `pipeline="numpy"`: the embedded digits
and MNIST-format idx folders (MNIST, Fashion-MNIST), with the tf.data
path's splits, batches, standardisation and number of steps an epoch:

* `EpochBatches`: training batches, epoch e's examples in an order that
  depends only on the seed and e (a resumed run sees what the uninterrupted
  one saw); endless (`train_epochs`, given `fit`'s `steps_per_epoch`) or one
  epoch a pass (`train`).  The last batch of an epoch holds the remainder,
  as tf.data's `batch` keeps it.
* `Batches`: the test and validation batches, in order.

The order of an epoch is NumPy's (`epoch_order`), not TensorFlow's
stateless shuffle: the same examples an epoch, in another order than the
tf.data path's.  Batches are read in the training thread (they are slices
of arrays in memory), `preprocess` applied to each.
"""

import math
import random

import keras
import numpy as np


def epoch_order(seed, epoch, count):
    """The order of an epoch's `count` examples: a permutation of
    `range(count)` that depends on `seed` and `epoch` alone."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(count)


class Batches(keras.utils.PyDataset):
    """`(x, y)` batches of `batch_size` examples of arrays, in order; the
    last holds the remainder.

    Args:
        x, y: arrays of the same length.
        batch_size: examples a batch.
        preprocess: optional function of an `x` batch (e.g. uint8 images to
            float32, standardized).
    """

    def __init__(self, x, y, batch_size, preprocess=None):
        super().__init__()
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y {len(y)}.")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.preprocess = preprocess

    def __len__(self):
        return math.ceil(len(self.y) / self.batch_size)

    @property
    def num_batches(self):
        return len(self)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return _batch(self.x[rows], self.y[rows], self.preprocess)


class EpochBatches(keras.utils.PyDataset):
    """Training batches of `x`, `y`, reshuffled every epoch (`epoch_order`).

    Args:
        x, y: the training examples, arrays of the same length.
        batch_size: examples a batch; an epoch has
            `ceil(len(y) / batch_size)` batches.
        seed: the run's seed (None: a random one).
        first_epoch: the epoch of the first batch.
        endless: batches of `first_epoch`, then of the next epoch, without
            end (`num_batches` None: give `fit` its `steps_per_epoch`); else
            one epoch a pass, the next epoch after each pass (`fit` calls
            `on_epoch_end`; iterating to the end counts too).
        preprocess: optional function of an `x` batch.
    """

    def __init__(self, x, y, batch_size, seed, first_epoch=0, endless=True,
                 preprocess=None):
        super().__init__()
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y {len(y)}.")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.seed = random.getrandbits(31) if seed is None else int(seed)
        self.epoch = int(first_epoch)
        self.endless = endless
        self.preprocess = preprocess
        self.steps_per_epoch = math.ceil(len(y) / self.batch_size)
        self._order = (None, None)  # (epoch, its order): the last one used.

    def __len__(self):
        if self.endless:
            raise TypeError("endless training batches have no length; "
                            "give fit steps_per_epoch")
        return self.steps_per_epoch

    @property
    def num_batches(self):
        return None if self.endless else self.steps_per_epoch

    def order(self, epoch):
        """The examples' order in `epoch`."""
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.seed, epoch, len(self.y)))
        return self._order[1]

    def __getitem__(self, index):
        if not self.steps_per_epoch:
            raise IndexError("no training examples")
        if index < 0 or (not self.endless and index >= self.steps_per_epoch):
            raise IndexError(f"batch {index} of {self.steps_per_epoch}")
        epoch, step = self.epoch, index
        if self.endless:
            epoch, step = self.epoch + index // self.steps_per_epoch, \
                index % self.steps_per_epoch
        rows = self.order(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        return _batch(self.x[rows], self.y[rows], self.preprocess)

    def __iter__(self):
        yield from super().__iter__()
        if not self.endless:
            self.epoch += 1

    def on_epoch_end(self):
        if not self.endless:
            self.epoch += 1


def _batch(x, y, preprocess):
    return (x if preprocess is None else preprocess(x)), y


def split_sizes(num_train, num_test, *, max_train, max_test, validation=0):
    """How the configs cut a dataset's splits, for tf.data and arrays alike:
    the last `validation` training examples held out, then the first
    `max_train` of the rest and the first `max_test` test examples (0: all).

    Returns `(rest, num_train, num_test)`: the training examples before the
    held-out ones, and the sizes kept; ValueError when nothing is left to
    train on.
    """
    rest = num_train
    if validation:
        if validation >= num_train:
            raise ValueError(
                f"validation_examples={validation} leaves no training example: the "
                f"training split has {num_train}; hold out fewer.")
        rest = num_train - validation
    kept = min(rest, max_train) if max_train else rest
    return rest, kept, (min(num_test, max_test) if max_test else num_test)


def limit(train, test, *, max_train, max_test, validation=0):
    """`split_sizes` applied to arrays.

    Args:
        train, test: `(x, y)` pairs of arrays.

    Returns:
        `(train, test, validation)`, pairs of arrays (validation None
        without).
    """
    (x, y), (x_test, y_test) = train, test
    rest, kept, kept_test = split_sizes(len(y), len(y_test), max_train=max_train,
                                        max_test=max_test, validation=validation)
    held_out = (x[rest:], y[rest:]) if validation else None
    return (x[:kept], y[:kept]), (x_test[:kept_test], y_test[:kept_test]), held_out
