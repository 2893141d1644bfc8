"""The callbacks of `train_and_evaluate`: epoch timing, exit accuracies,
atomic epoch checkpoints and the workdir's CSV logs."""

import os
import re
import time

import keras

from al_keras.training import runs

CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d+)\.keras$")


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to the logs: the epoch's training, not its evaluation."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._seconds = time.perf_counter(), None

    def on_test_begin(self, logs=None):  # fit's validation starts
        if self._seconds is None:
            self._seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        if self._seconds is None:
            self._seconds = time.perf_counter() - self._start
        logs["epoch_seconds"] = self._seconds


class ExitAccuracy(keras.callbacks.Callback):
    """Adds each exit's test accuracy, `val_exit_<i>_accuracy`, to the logs."""

    def __init__(self, test_data):
        super().__init__()
        self.test_data = test_data

    def on_epoch_end(self, epoch, logs=None):
        blocks = self.model.num_blocks
        shortcuts = range(1, blocks)  # The full path is fit's validation.
        for exit, accuracy in zip(shortcuts, exit_accuracies(
                self.model, self.test_data, shortcuts)):
            logs[f"val_exit_{exit}_accuracy"] = accuracy
        logs[f"val_exit_{blocks}_accuracy"] = logs["val_accuracy"]


def exit_accuracies(model, test_data, exits=None):
    """Test accuracy of an ALModel at each exit of `exits` (default all),
    in one pass over `test_data` (`ALModel.evaluate_exits`)."""
    exits = list(range(1, model.num_blocks + 1) if exits is None else exits)
    if not exits:
        return []
    by_exit = model.evaluate_exits(test_data, exits)
    return [by_exit[exit] for exit in exits]


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves `epoch_<k>.keras` atomically after each epoch, keeping the last `keep`."""

    def __init__(self, directory, keep=2):
        super().__init__()
        self.directory = directory
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        final = os.path.join(self.directory, f"epoch_{epoch + 1:04d}.keras")
        partial = os.path.join(self.directory, f"partial-epoch_{epoch + 1:04d}.keras")
        self.model.save(partial)
        runs.replace_when_written(partial, final)
        for _, path in checkpoints(self.directory)[:-self.keep]:
            os.remove(path)


class MetricsLogger(keras.callbacks.Callback):
    """Writes each epoch's logs to `metrics.csv`, and its `TIMING_KEYS` to
    `timings.csv` (so that reruns give identical metrics), rewriting each
    file atomically after every epoch."""

    TIMING_KEYS = ("epoch_seconds",)

    def __init__(self, workdir):
        super().__init__()
        self.workdir = workdir

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for name, keys in (("metrics.csv", [k for k in logs if k not in self.TIMING_KEYS]),
                           ("timings.csv", [k for k in self.TIMING_KEYS if k in logs])):
            if keys:
                runs.append_row(os.path.join(self.workdir, name),
                                {"epoch": epoch, **{k: logs[k] for k in keys}})


def checkpoints(directory):
    """[(epoch, path)] of the finished checkpoints in `directory`, oldest first."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = CHECKPOINT_PATTERN.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found)
