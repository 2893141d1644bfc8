"""Training seconds until the test accuracy first reaches a bar: AL on Ray against BP.

    python benchmarks/time_to_accuracy.py \
        --data_dir=/usr/share/datasets/fashion-mnist [--model=cnn,light] \
        [--bar_epochs=10] [--eval_every=300] [--steps_per_execution=8] \
        [--bp_steps_per_execution=1] \
        [--bp=mirrored] [--json=/tmp/time_to_accuracy.json]

Fashion-MNIST (Debian's idx files), `configs/fashion_mnist.py:model=cnn,light`
by default, batch 32, Adam 1e-3 (constant), seed 0, in two processes, one at
a time on this machine:

1. BP at its best trains `--bar_epochs` epochs (`--bp=mirrored`:
   MirroredStrategy over one CPU device per core; `--bp=xla`: one process,
   XLA).  The bar is its last test accuracy minus 0.5 points.
2. AL under `RayPipeline(num_stages=2)`, XLA per stage, trains until its
   test accuracy first reaches the bar (at most 3 x `--bar_epochs` epochs).

Each evaluates the whole test set every `--eval_every` steps (and at each
epoch's end); the clock counts training only, so the evaluations (and for
AL the pipeline drain before each) are left out of both.  Printed and
written with `--json`: per method the (training seconds, steps, test
accuracy) of every evaluation, BP's seconds to the bar (its first
evaluation at or above it), AL's, and `al_over_bp` (the issue's target:
<= 0.8).
"""

import json
import os
import subprocess
import sys
import time

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_DATA_DIR = flags.DEFINE_string("data_dir", "/usr/share/datasets/fashion-mnist",
                                "Fashion-MNIST idx files.")
_MODEL = flags.DEFINE_string("model", "cnn,light", "configs/fashion_mnist.py's argument.")
_BAR_EPOCHS = flags.DEFINE_integer("bar_epochs", 10, "BP's epochs; they set the bar.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 300, "Steps between evaluations.")
_SPE = flags.DEFINE_integer("steps_per_execution", 8, "AL's batches per Ray call.")
_BP_SPE = flags.DEFINE_integer(
    "bp_steps_per_execution", 1, "BP's batches per call (1: Keras 3.15 under MirroredStrategy "
    "pays more at each epoch's start with more when the epoch is not a multiple of it).")
_BP = flags.DEFINE_enum("bp", "mirrored", ["mirrored", "xla"], "BP's best setting here.")
_MAX_TRAIN = flags.DEFINE_integer("max_train_examples", 0, "Only the first N (0: all).")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
_CHILD = flags.DEFINE_string("child", None, "(internal) bp or al.")
_BAR = flags.DEFINE_float("bar", None, "(internal) stop at this test accuracy.")
_EPOCHS = flags.DEFINE_integer("epochs", None, "(internal) most epochs.")


def train(method, epochs, bar):
    """Trains `method` in this process; returns its evaluations."""
    from al_keras import distribute

    strategy = None
    if method == "al":
        strategy = distribute.RayPipeline(num_stages=2)
    elif _BP.value == "mirrored":
        strategy = distribute.make_strategy("mirrored")
    import keras

    from al_keras import models
    from al_keras.data import datasets
    from al_keras.training import config_lib

    config = config_lib.load_config_module(
        os.path.join(ROOT, "configs", "fashion_mnist.py")).get_config(
            f"model={_MODEL.value},method={method}")
    keras.utils.set_random_seed(0)
    data = datasets.load("fashion_mnist", batch_size=32, seed=0, data_dir=_DATA_DIR.value,
                         test_batch_size=1000, max_train_examples=_MAX_TRAIN.value)
    spe = _SPE.value if method == "al" else _BP_SPE.value
    options = {k: v for k, v in config.model_options.to_dict().items() if v is not None}
    with distribute.strategy_scope(strategy):
        model = models.get(config.model, input_shape=data.input_shape,
                           num_classes=data.num_classes, method=method, **options)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                      jit_compile=strategy is None or method == "al",
                      steps_per_execution=spe)
    evaluations = []

    class Evaluate(keras.callbacks.Callback):
        """Every `eval_every` steps and at each epoch's end, off the clock."""

        def __init__(self):
            super().__init__()
            self.steps, self.seconds, self.since = 0, 0.0, None
            self.last_eval = self.epoch_start = 0

        def on_train_batch_begin(self, batch, logs=None):
            if self.since is None:
                self.since = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = self.steps

        def on_train_batch_end(self, batch, logs=None):
            self.steps = self.epoch_start + batch + 1  # Keras gives a call's last batch.
            if self.steps - self.last_eval >= _EVAL_EVERY.value:
                self._evaluate()

        def on_epoch_end(self, epoch, logs=None):
            if self.steps > self.last_eval:
                self._evaluate()

        def _evaluate(self):
            self.seconds += time.perf_counter() - self.since
            self.last_eval = self.steps
            if strategy is not None and method == "al":
                strategy.sync()
            accuracy = model.evaluate(data.test, verbose=0, return_dict=True)["accuracy"]
            evaluations.append((round(self.seconds, 2), self.steps, round(accuracy, 4)))
            print(f"{method}: {self.seconds:.1f} s, {self.steps} steps, "
                  f"test accuracy {accuracy:.4f}", flush=True)
            if bar is not None and accuracy >= bar:
                model.stop_training = True
            self.since = time.perf_counter()

    model.fit(data.train, epochs=epochs, verbose=0, callbacks=[Evaluate()])
    if strategy is not None and method == "al":
        strategy.shutdown()
    return evaluations


def _spawn(method, epochs, bar=None):
    command = [sys.executable, __file__, f"--child={method}", f"--epochs={epochs}",
               f"--data_dir={_DATA_DIR.value}", f"--model={_MODEL.value}",
               f"--eval_every={_EVAL_EVERY.value}", f"--steps_per_execution={_SPE.value}",
               f"--bp_steps_per_execution={_BP_SPE.value}",
               f"--bp={_BP.value}", f"--max_train_examples={_MAX_TRAIN.value}"]
    command += [f"--bar={bar}"] if bar is not None else []
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{method} failed (exit {proc.returncode}).")
    return json.loads(lines[-1][len("RESULT "):])


def seconds_to(evaluations, bar):
    """Training seconds of the first evaluation at or above `bar` (None: never)."""
    return next((seconds for seconds, _, accuracy in evaluations if accuracy >= bar), None)


def main(argv):
    del argv
    if _CHILD.value:
        print("RESULT " + json.dumps(train(_CHILD.value, _EPOCHS.value, _BAR.value)))
        return
    bp = _spawn("bp", _BAR_EPOCHS.value)
    bar = round(bp[-1][2] - 0.005, 4)
    al = _spawn("al", 3 * _BAR_EPOCHS.value, bar)
    bp_seconds, al_seconds = seconds_to(bp, bar), seconds_to(al, bar)
    report = {"model": _MODEL.value, "bar": bar, "bar_epochs": _BAR_EPOCHS.value,
              "bp_setting": _BP.value, "al_steps_per_execution": _SPE.value,
              "bp_steps_per_execution": _BP_SPE.value,
              "bp_seconds_to_bar": bp_seconds, "al_ray_2_seconds_to_bar": al_seconds,
              "al_over_bp": (round(al_seconds / bp_seconds, 3)
                             if al_seconds and bp_seconds else None),
              "bp": bp, "al_ray_2": al}
    print(f"\nbar (BP's {_BAR_EPOCHS.value}-epoch test accuracy - 0.5 pt): {bar}")
    print(f"| method | training seconds to the bar | evaluations |\n|---|---|---|\n"
          f"| BP ({_BP.value}) | {bp_seconds} | {len(bp)} |\n"
          f"| AL, Ray 2 stages | {al_seconds} | {len(al)} |")
    print(f"al_over_bp: {report['al_over_bp']}")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    app.run(main)
