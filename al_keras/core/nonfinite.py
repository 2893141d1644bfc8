"""What training does when a loss turns NaN or Inf (`on_nonfinite_loss`).

* `"stop"` (default): `StopOnNonFiniteLoss`, which `ALModel.fit` and
  `BPModel.fit` add, raises `NonFiniteLossError` after the first step whose
  loss is not finite, naming the step and each non-finite local loss.  It
  raises from `on_train_batch_end`, so no later callback of that epoch runs:
  an epoch checkpoint (`train.py`) is never written from the broken model.
* `"skip"` (`ALModel` only): each block applies an update only when its
  loss and gradients are finite (`all_finite`); the `skipped_updates` log
  counts the local updates skipped in the epoch (two per block and batch).
"""

import math
import re
import sys

import keras
from keras import ops

MODES = ("stop", "skip")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf during `fit`; the message names where."""


def check_mode(mode, strategy=None):
    """Raises ValueError for an unknown mode or "skip" under data parallelism."""
    if mode not in MODES:
        raise ValueError(f"on_nonfinite_loss must be one of {MODES}, got {mode!r}.")
    tf = sys.modules.get("tensorflow")
    if mode == "skip" and tf is not None and isinstance(
            strategy, (tf.distribute.MirroredStrategy,
                       tf.distribute.MultiWorkerMirroredStrategy)):
        raise ValueError(
            "on_nonfinite_loss='skip' cannot be used under a data-parallel "
            f"{type(strategy).__name__}: one replica cannot skip an all-reduced "
            "update. Use 'stop'.")


def all_finite(loss, grads):
    """Whether `loss` and every gradient of `grads` are finite (a bool tensor)."""
    checks = [ops.isfinite(ops.cast(loss, "float32"))]
    checks += [ops.all(ops.isfinite(g)) for g in grads if g is not None]
    return ops.all(ops.stack(checks))


def check_gradients(grads, variables, family, index):
    """Raises ValueError naming the variables of block `index`'s `family`
    loss ("associated", "auto-encoder") that got no gradient."""
    missing = [v.path for g, v in zip(grads, variables) if g is None]
    if missing:
        raise ValueError(
            f"Block {index + 1}'s {family} loss has no gradient for "
            f"{missing}: every trainable variable of the part it trains must "
            "take part in that loss."
        )


_LOSS_NAME = re.compile(r"^(assoc|ae)_loss_(\d+)$")


def describe_loss(name):
    """`"assoc_loss_2"` -> `"block 2's associated loss"`; other names as they are."""
    match = _LOSS_NAME.match(name)
    if not match:
        return name
    family = {"assoc": "associated", "ae": "auto-encoder"}[match.group(1)]
    return f"block {match.group(2)}'s {family} loss ({name})"


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` after the first step with a non-finite loss.

    The logs of a step hold the epoch's running means, which turn NaN / Inf
    at the first step whose loss does.  The error names that step (1-based,
    counted over the whole training as `model.optimizer.iterations`), the
    epoch and batch, and each non-finite local loss, block by block.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = {name: value for name, value in (logs or {}).items()
               if name != "loss" and "loss" in name
               and not math.isfinite(float(value))}
        if not bad and math.isfinite(float((logs or {}).get("loss", 0.0))):
            return
        bad = bad or {"loss": logs["loss"]}
        losses = ", ".join(f"{describe_loss(n)} = {float(v)}"
                           for n, v in sorted(bad.items(), key=_block_order))
        step = int(self.model.optimizer.iterations)
        raise NonFiniteLossError(
            f"Non-finite loss at training step {step} (epoch "
            f"{getattr(self, '_epoch', 0) + 1}, batch {batch + 1}): {losses}. "
            "Training stopped; the model's weights may now hold NaN. Lower the "
            "learning rate or check the data"
            + ("; on_nonfinite_loss='skip' skips such batches instead."
               if hasattr(self.model, "assoc_optimizers") else "."))


def _block_order(item):
    match = _LOSS_NAME.match(item[0])
    return (int(match.group(2)), match.group(1) != "ae") if match else (0, False)
