"""Soak: does the resident set stay flat over a long `train_and_evaluate`?

    python benchmarks/soak.py                  # AL MLP, 30 epochs
    python benchmarks/soak.py --method=bp
    python benchmarks/soak.py --drop=TensorBoard,ExitAccuracy   # bisecting

Trains the embedded digits config (configs/digits.py: the MLP, Adam 1e-3,
45 steps an epoch) for `--epochs` (30) epochs through the path a user runs,
`al_keras.training.train_lib.train_and_evaluate(config, workdir)`, export off, in a
temporary workdir (removed at the end unless `--workdir` is given).  After
every epoch, once every callback of train_and_evaluate has run (exit
accuracies, metrics logger, TensorBoard, the epoch checkpoint), it calls
`gc.collect()` and glibc's `malloc_trim(0)` and reads the process's resident
set (`VmRSS` of /proc/self/status, Linux).  Without the trim, RSS drops by
50-100 MiB at a random epoch when malloc happens to give back heap freed
long before (seen at epoch 4 of one AL run, at epochs 15-16 of BP runs),
which hides real growth; `--nomalloc_trim` reads raw RSS.  Printed per
epoch: RSS, its change since the last epoch, TF's CPU allocator's bytes in
use (`tf.config.experimental.get_memory_info("CPU:0")`) and the count of
Python objects the collector tracks; at the end the line

    rss_epoch_5_mib=..., rss_epoch_30_mib=..., ratio=..., within_5pct=True

The check passes when RSS after epoch `--epochs` is at most `--tolerance`
(5%) above RSS after epoch `--early` (5: tracing, XLA compilation, the
first checkpoint and the TensorBoard writer are behind by then); otherwise
the script exits with status 1.  Only growth fails it.

How the RSS callback gets in: train_and_evaluate takes no callbacks, so for
the length of the one call `keras.Model.fit` is wrapped (and restored after)
to append the RSS callback, last, to the callbacks train_and_evaluate
passes.  The alternative, rebuilding train_and_evaluate's pieces here
(models.get, datasets.load, train_lib._compile and its callbacks), would
measure a copy that drifts from train_lib as it changes; the wrapper
measures whatever train_and_evaluate does, and touches nothing else.
`--drop` removes train_and_evaluate's callbacks by class name (EpochTimer,
ExitAccuracy, MetricsLogger, TensorBoard, EpochCheckpoint) to find what grows
(without MetricsLogger, results.json counts 0 epochs: it reads metrics.csv).

Measured (2-core CPU, idle, TF 2.21, Keras 3.15.1; AL 27 s, BP 19 s of
training):

    AL: rss_epoch_5_mib=842.4, rss_epoch_30_mib=855.7, ratio=1.016, within_5pct=True
    BP: rss_epoch_5_mib=803.1, rss_epoch_30_mib=806.8, ratio=1.005, within_5pct=True

Both pass, but AL's RSS grows steadily, 0.54 MiB an epoch (BP: 0.16), while
TF's allocator and the Python object count stay flat: native memory.  At
`--epochs=100` AL fails (ratio 1.059).  Toggled over 100 epochs, the
checkpoint is 0.3 MiB an epoch of it (without EpochCheckpoint: 0.14) and the
TensorBoard callback 0.2.  The checkpoint's share is Keras' (3.15.1): its
`saving_lib.get_attr_skipset` caches the skip set under
`saving_attr_skipset_<type>` but looks it up under
`saving_attr_skiplist_<type>`, so every `model.save` builds a throwaway
`Optimizer(1.0)` per optimizer it visits (AL's MLP has 5, BP's 1), and TF
keeps ~30 KiB of native memory for each eagerly created variable of a new
name (a loop of `tf.Variable(0.0, name=<unique>)` grows 29 KiB a call).
With that cache key filled in by hand before training (checkpoints still
saved), AL grows 0.21 MiB an epoch (ratio at 100 epochs 1.023), and 0.01
without the TensorBoard callback as well.
"""

import contextlib
import ctypes
import gc
import os
import shutil
import sys
import tempfile
import time

from absl import app, flags, logging

_EPOCHS = flags.DEFINE_integer("epochs", 30, "Epochs of training.")
_EARLY = flags.DEFINE_integer("early", 5, "The epoch whose RSS is the reference.")
_TOLERANCE = flags.DEFINE_float(
    "tolerance", 0.05, "Allowed growth of RSS from epoch --early to the last.")
_METHOD = flags.DEFINE_enum("method", "al", ["al", "bp"], "AL or its BP twin.")
_MODEL = flags.DEFINE_enum("model", "mlp", ["mlp", "cnn"],
                           "The digits config's model.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Workdir of the run (kept); default a temporary one, removed.")
_DROP = flags.DEFINE_list(
    "drop", [], "Class names of train_and_evaluate's callbacks to leave out "
    "(EpochTimer, ExitAccuracy, MetricsLogger, TensorBoard, EpochCheckpoint).")
_MALLOC_TRIM = flags.DEFINE_bool(
    "malloc_trim", True, "Call glibc's malloc_trim(0) before each reading: "
    "RSS without the freed heap malloc keeps (--nomalloc_trim: raw RSS).")
_VERBOSE = flags.DEFINE_integer("verbose", 0, "Keras' verbosity in fit.")

_MIB = 2 ** 20


def rss_kib():
    """The process's resident set, KiB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("No VmRSS in /proc/self/status (Linux only).")


def make_rss_callback(trim):
    """A callback recording, after each epoch, RSS and the figures around it."""
    import keras
    import tensorflow as tf

    libc = None
    if trim:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.malloc_trim  # glibc only.
        except (OSError, AttributeError):
            print("No glibc malloc_trim here: raw RSS.", flush=True)
            libc = None

    class RSSAtEpochEnd(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows = []

        def on_epoch_end(self, epoch, logs=None):
            gc.collect()
            if libc is not None:
                libc.malloc_trim(0)
            row = {"epoch": epoch + 1, "rss_mib": rss_kib() / 1024,
                   "tf_mib": tf.config.experimental.get_memory_info(
                       "CPU:0")["current"] / _MIB,
                   "py_objects": len(gc.get_objects()),
                   "val_accuracy": (logs or {}).get("val_accuracy"),
                   "epoch_seconds": (logs or {}).get("epoch_seconds")}
            delta = row["rss_mib"] - self.rows[-1]["rss_mib"] if self.rows else 0.0
            self.rows.append(row)
            accuracy = (f"{row['val_accuracy']:.3f}"
                        if row["val_accuracy"] is not None else "-")
            seconds = (f"{row['epoch_seconds']:.2f}"
                       if row["epoch_seconds"] is not None else "-")
            print(f"epoch {row['epoch']:3d}: rss_mib={row['rss_mib']:.1f} "
                  f"({delta:+.1f}) tf_allocator_mib={row['tf_mib']:.2f} "
                  f"py_objects={row['py_objects']} val_accuracy={accuracy} "
                  f"epoch_seconds={seconds}", flush=True)

    return RSSAtEpochEnd()


@contextlib.contextmanager
def extra_callback(callback, drop=()):
    """Inside, every `keras.Model.fit` also runs `callback` (last) and leaves
    out the callbacks whose class name is in `drop`."""
    import keras

    had_own = "fit" in keras.Model.__dict__
    original = keras.Model.fit

    def fit(self, *args, callbacks=None, **kwargs):
        callbacks = [c for c in (callbacks or []) if type(c).__name__ not in drop]
        return original(self, *args, callbacks=[*callbacks, callback], **kwargs)

    keras.Model.fit = fit
    try:
        yield
    finally:
        if had_own:
            keras.Model.fit = original
        else:
            del keras.Model.fit


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not 1 <= _EARLY.value < _EPOCHS.value:
        raise app.UsageError("Need 1 <= --early < --epochs.")
    logging.set_verbosity(logging.WARNING)
    from al_keras.training import config_lib, train_lib

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "configs", "digits.py")
    config = config_lib.load_config_module(path).get_config(
        f"model={_MODEL.value},method={_METHOD.value}")
    config.epochs = _EPOCHS.value
    config.export = False

    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="al_keras_soak_")
    if train_lib.finished_epochs(workdir):
        raise app.UsageError(f"{workdir} holds checkpoints: the run would resume; "
                             "choose an empty workdir.")
    callback = make_rss_callback(_MALLOC_TRIM.value)
    print(f"digits {_MODEL.value} {_METHOD.value}, {_EPOCHS.value} epochs, "
          f"workdir {workdir}"
          + (f", without {','.join(_DROP.value)}" if _DROP.value else ""),
          flush=True)
    start = time.perf_counter()
    try:
        with extra_callback(callback, drop=set(_DROP.value)):
            results = train_lib.train_and_evaluate(config, workdir,
                                                   verbose=_VERBOSE.value)
    finally:
        if _WORKDIR.value is None:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - start

    rows = {row["epoch"]: row for row in callback.rows}
    early, late = rows[_EARLY.value], rows[_EPOCHS.value]
    ratio = late["rss_mib"] / early["rss_mib"]
    within = ratio <= 1 + _TOLERANCE.value
    per_epoch = (late["rss_mib"] - early["rss_mib"]) / (_EPOCHS.value - _EARLY.value)
    print(f"test_accuracy={results['test_accuracy']:.4f}, "
          f"wall_seconds={seconds:.1f}, "
          f"growth_mib_per_epoch_after_{_EARLY.value}={per_epoch:.2f}, "
          f"tf_allocator_mib {early['tf_mib']:.2f} -> {late['tf_mib']:.2f}, "
          f"py_objects {early['py_objects']} -> {late['py_objects']}")
    print(f"rss_epoch_{_EARLY.value}_mib={early['rss_mib']:.1f}, "
          f"rss_epoch_{_EPOCHS.value}_mib={late['rss_mib']:.1f}, "
          f"ratio={ratio:.3f}, "
          f"within_{round(_TOLERANCE.value * 100):g}pct={within}", flush=True)
    if not within:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
