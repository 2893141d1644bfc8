"""Learning speed in training STEPS to a test-accuracy bar: AL against its BP twin.

    python benchmarks/learning_speed.py [--models=digits_mlp,fmnist_cnn_light,...]
        [--seeds=0,1,2] [--lrs=2e-4,1e-3] [--full | --smoke] [--original]
        [--json=/tmp/learning_speed.json]

Every model of `MODELS`, AL and BP each at every learning rate of `--lrs`
(Adam, constant) and every seed of `--seeds`; batch and model options of the
model's config (`models.get` defaults + the config's `model_options`; the
learning rate and schedule are the grid's instead):

  digits_mlp             scikit-learn's 8x8 digits (64 features, the fixed
                         seed-0 split: 1,438 train / 359 test), `mlp` with
                         hidden_units=128, label_units=64, batch 32.
  fmnist_mlp             Fashion-MNIST (Debian's idx files), configs/
  fmnist_cnn             fashion_mnist.py `model=mlp`, `model=cnn` and
  fmnist_cnn_light       `model=cnn,light`, batch 32.
  fmnist_resnet20_light  configs/cifar10.py `model=resnet20,light` (ResNet-20,
                         L2 1e-4, light bridges: 1x hidden width, s_i pooled
                         to 4x4), batch 32, on Fashion-MNIST zero-padded to
                         32x32x1 (2 pixels a side, after the mean pixel is
                         subtracted, so the border is the mean pixel): the
                         closest to CIFAR-10 offline.
  wordnet_lstm           WordNet noun supersenses (Debian's wordnet-base),
  wordnet_transformer    configs/wordnet.py `model=lstm` / `model=transformer`
                         (its sequence length 32, vocabulary 30,000 adapted on
                         the training subset, batch 128).

Fixed training and test subsets (the first N of each split: `MODELS`'
sizes below), a step budget, and every `eval_every` steps the test accuracy
(counted exactly, correct / total) of the full path and, for AL, of every
exit (`ALModel.call_exits` via `evaluate_exits`, one pass; the full path is
the last exit), off the clock: only steps count.  Each (model, method) runs
in its own process (XLA, `steps_per_execution` = `eval_every`, every core),
its seeds and rates one after the other, each a fresh model; a seed sets
the weights and the order of the training batches (the subsets stay).

Per model: the bar = BP's final test accuracy at BP's best rate (mean over
seeds) minus 0.01, where a method's best rate is the one of `--lrs` with the
higher mean final accuracy (full path).  A run's steps to the bar are the
first evaluation's step at or above it (None: never; a mean over seeds
counts never as budget + eval_every, and `*_reached` says whether every seed
got there; the spreads are over the seeds that got there).  Written with
`--json` (per model, besides its settings, the options models.get got, and
seconds):

  al_steps_over_bp       AL's mean steps to the bar (full path) at AL's best
                         rate over BP's at BP's best; target <= 1.0 (and
                         al_reached).
  al_exit_steps_over_bp  the same for AL's best exit (per seed, the first step
                         at which any exit reaches the bar).
  al_minus_bp_accuracy   AL's mean final accuracy minus BP's, each at its best
                         rate; target >= 0.
  per_lr                 the same three at each rate (AL and BP at that rate,
                         same bar), with per method and seed the steps to the
                         bar, final accuracies (AL: every exit's too), every
                         evaluation `[step, accuracy(, {exit: accuracy})]`,
                         and the seeds' min / max / std.

and at the top the settings, date, hardware, versions, the command line and
`summary` (which models meet each target).  Printed: the estimated time,
one line per model, then two markdown tables and the summary, e.g. (the
default run of digits_mlp, 82 s, on 2026-12-04 while AL's defaults were
being changed; "(never)": some seed did not reach the bar):

  | model | bar | BP lr | AL lr | BP steps | AL steps | AL exit steps | al_steps_over_bp |
    al_exit_steps_over_bp | BP final | AL final | al_minus_bp_accuracy | targets |
  |---|---|---|---|---|---|---|---|---|---|---|---|---|
  | digits_mlp | 0.9445 | 0.001 | 0.001 | 115.0 | 150.0 (never) | 150.0 (never) | 1.304 |
    1.304 | 0.9545 | 0.9294 | -0.0251 | steps no, accuracy no |

  Per rate (steps: mean over seeds to the same bar):

  | model | lr | BP steps | AL steps | AL exit steps | al_steps_over_bp |
    al_exit_steps_over_bp | BP final (min-max) | AL final (min-max) | al_minus_bp_accuracy |
  |---|---|---|---|---|---|---|---|---|---|
  | digits_mlp | 0.0002 | 150.0 (never) | 150.0 (never) | 150.0 (never) | 1.000 | 1.000 |
    0.9183 (0.9136-0.9248) | 0.8942 (0.8747-0.9053) | -0.0241 |
  | digits_mlp | 0.001 | 115.0 | 150.0 (never) | 150.0 (never) | 1.304 | 1.304 |
    0.9545 (0.9526-0.9582) | 0.9294 (0.9248-0.9331) | -0.0251 |

  summary: steps target (al_steps_over_bp <= 1.0) met by []; accuracy target
  (al_minus_bp_accuracy >= 0) met by []; both by []; not measured: []

(each table row is one line; wrapped here).

Sizes: train / test examples (the first of each split), step budget, steps
between evaluations; the estimated time of the default run (3 seeds x 2
rates x AL and BP = 12 runs a model); `--full` in brackets:

  digits_mlp             1,438 / 359, 135 (~3 epochs), every 15   ~1.5 min
                         [1,438 / 359, 450, every 15]
  fmnist_mlp             6,400 / 1,000, 150, every 25             ~4.5 min
  fmnist_cnn             6,400 / 1,000, 80, every 20              ~6 min
  fmnist_cnn_light       6,400 / 1,000, 100, every 20             ~5 min
  fmnist_resnet20_light  6,400 / 1,000, 80, every 20              ~6 min
                         [images: 20,000 / 5,000, 1,200, every 100]
  wordnet_lstm           20,480 / 1,000, 45, every 15             ~5.5 min
  wordnet_transformer    20,480 / 1,000, 80, every 20             ~5.5 min
                         [text: 73,904 / 4,000, 1,200, every 100]

In all ~33 minutes, extrapolated (`estimate_seconds`) from one seed of
each (model, method) timed on the project's 2-core CPU while another
process kept about one core busy (`MEASURED`); an idle machine should be
faster, a busier one slower (a check under a heavier load ran 1.3x the
estimate).  The budgets are small: the default run compares the first
steps of learning; `--full` (~4.5 hours) the longer stretch for the docs'
table.  The XLA compilation of each run (3-13 s) and the evaluations are a
large part of the time, so halving a budget does not halve it.  `--smoke`
(the test's): one seed, rate 1e-3, 8-20 steps on small subsets: ~20 s for
digits_mlp, ~4 minutes for all models.  `--steps=N` / `--eval_every=N`
override every model's budget / interval.

`--original` passes `original=True` (the paper's settings) to `models.get`
for AL; where this al_keras does not take it, the run stops at once and
says so.  A model whose data is missing is skipped (a one-line reason in
the output and the JSON); a process that fails is recorded as an error
and the run goes on (exit status 1 at the end).
"""

import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
WORDNET_DIR = "/usr/share/wordnet"
BAR_MARGIN = 0.01
METHODS = ("al", "bp")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """A run's subsets and steps: the first `train` / `test` examples (0: all)."""

    train: int
    test: int
    budget: int
    eval_every: int


@dataclasses.dataclass(frozen=True)
class Model:
    """A benchmarked model: its data, config and sizes."""

    dataset: str  # digits, fashion_mnist, wordnet
    config: str  # configs/<config>.py, or "" (digits_mlp: options below)
    arg: str  # the config argument, or the zoo name without a config
    options: dict  # options over the config's (digits_mlp: all of them)
    default: Sizes
    full: Sizes
    smoke: Sizes
    pad_to: int = 0  # images zero-padded to pad_to x pad_to


_FULL_IMAGES = Sizes(20000, 5000, 1200, 100)
_FULL_TEXT = Sizes(0, 4000, 1200, 100)
_SMOKE_IMAGES = Sizes(512, 256, 8, 4)
_SMOKE_TEXT = Sizes(1024, 256, 8, 4)
MODELS = {
    "digits_mlp": Model("digits", "", "mlp", {"hidden_units": 128, "label_units": 64},
                        Sizes(0, 0, 135, 15), Sizes(0, 0, 450, 15), Sizes(0, 0, 20, 10)),
    "fmnist_mlp": Model("fashion_mnist", "fashion_mnist", "model=mlp", {},
                        Sizes(6400, 1000, 150, 25), _FULL_IMAGES, _SMOKE_IMAGES),
    "fmnist_cnn": Model("fashion_mnist", "fashion_mnist", "model=cnn", {},
                        Sizes(6400, 1000, 80, 20), _FULL_IMAGES, _SMOKE_IMAGES),
    "fmnist_cnn_light": Model("fashion_mnist", "fashion_mnist", "model=cnn,light", {},
                              Sizes(6400, 1000, 100, 20), _FULL_IMAGES, _SMOKE_IMAGES),
    "fmnist_resnet20_light": Model("fashion_mnist", "cifar10", "model=resnet20,light", {},
                                   Sizes(6400, 1000, 80, 20), _FULL_IMAGES, _SMOKE_IMAGES,
                                   pad_to=32),
    "wordnet_lstm": Model("wordnet", "wordnet", "model=lstm", {},
                          Sizes(20480, 1000, 45, 15), _FULL_TEXT, _SMOKE_TEXT),
    "wordnet_transformer": Model("wordnet", "wordnet", "model=transformer", {},
                                 Sizes(20480, 1000, 80, 20), _FULL_TEXT, _SMOKE_TEXT),
}
# Seconds measured on the project's 2-core CPU (TF 2.21, Keras 3.15, XLA; on
# 2026-12-04 with another process busy on about one core, so perhaps 1.3-1.5x
# an idle machine's), one seed at lr 1e-3 of each (model, method), 2-4
# evaluation intervals: (build + XLA compilation of a run, one training step,
# one evaluation per 1,000 test examples, the data of one seed).  Each
# process also costs ~7 s (Python, TensorFlow, al_keras), each run ~1.5 s
# more for tracing its first evaluation.  `estimate_seconds` and the
# docstring's times come from these.
MEASURED = {
    ("digits_mlp", "al"): (4.7, 0.002, 0.22, 0.3),  # compile: + the short last batch
    ("digits_mlp", "bp"): (3.5, 0.0012, 0.015, 0.3),
    ("fmnist_mlp", "al"): (3.2, 0.11, 0.65, 0.5),
    ("fmnist_mlp", "bp"): (2.6, 0.065, 0.4, 0.5),
    ("fmnist_cnn", "al"): (10.3, 0.25, 1.75, 0.5),
    ("fmnist_cnn", "bp"): (3.1, 0.094, 0.85, 0.5),
    ("fmnist_cnn_light", "al"): (7.9, 0.095, 1.25, 0.5),
    ("fmnist_cnn_light", "bp"): (5.25, 0.099, 1.13, 0.5),
    ("fmnist_resnet20_light", "al"): (12.7, 0.09, 1.25, 0.5),
    ("fmnist_resnet20_light", "bp"): (12.5, 0.124, 1.0, 0.5),
    ("wordnet_lstm", "al"): (10.1, 0.121, 0.75, 2.5),
    ("wordnet_lstm", "bp"): (9.4, 0.319, 1.22, 2.5),
    ("wordnet_transformer", "al"): (12.7, 0.13, 0.82, 2.5),
    ("wordnet_transformer", "bp"): (9.35, 0.12, 0.46, 2.5),
}
PROCESS_SECONDS = 7.0
TRACE_SECONDS = 1.5
_TEST_EXAMPLES = {"digits": 359, "fashion_mnist": 10000, "wordnet": 8211}


def estimate_seconds(name, sizes, num_seeds, num_lrs):
    """The seconds `name` takes at `sizes` on the project's 2-core CPU (`MEASURED`)."""
    spec = MODELS[name]
    test = sizes.test or _TEST_EXAMPLES[spec.dataset]
    total = 0.0
    for method in METHODS:
        build, step, evaluation, data = MEASURED[name, method]
        run = (build + TRACE_SECONDS + sizes.budget * step
               + sizes.budget // sizes.eval_every * evaluation * test / 1000)
        total += PROCESS_SECONDS + num_seeds * data + num_seeds * num_lrs * run
    return total


_MODELS = flags.DEFINE_list("models", list(MODELS), "Models to run (default: all).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (--smoke: 0).")
_LRS = flags.DEFINE_list("lrs", ["2e-4", "1e-3"], "Adam's constant rates (--smoke: 1e-3).")
_FULL = flags.DEFINE_bool("full", False, "The bigger subsets and budgets (the docs' table).")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny subsets and budgets, one seed, one rate.")
_ORIGINAL = flags.DEFINE_bool("original", False,
                              "AL with models.get(..., original=True): the paper's settings.")
_STEPS = flags.DEFINE_integer("steps", None, "Override every model's step budget.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", None,
                                   "Override every model's steps between evaluations.")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
_FASHION_MNIST_DIR = flags.DEFINE_string("fashion_mnist_dir", FASHION_MNIST_DIR,
                                         "Fashion-MNIST's idx files.")
_WORDNET_DIR = flags.DEFINE_string("wordnet_dir", WORDNET_DIR, "WordNet's data.noun folder.")
_CHILD = flags.DEFINE_string("child", None, "(internal) model:method to run here.")


# ---------------------------------------------------------------- the numbers


def steps_to_bar(evaluations, bar):
    """The step of the first `(step, accuracy)` evaluation at or above `bar`.

    Args:
        evaluations: `(step, accuracy)` pairs in the order of training.
        bar: the accuracy to reach.

    Returns:
        The step, or None if no evaluation reaches `bar`.
    """
    return next((step for step, accuracy in evaluations if accuracy >= bar), None)


def exit_steps_to_bar(evaluations, bar):
    """The first step at which any exit reaches `bar` (min over exits).

    `evaluations`: `(step, accuracy, {exit: accuracy})` triples; None when
    they have no exits (BP) or no exit reaches `bar`.
    """
    steps = [steps_to_bar([(e[0], e[2][k]) for e in evaluations], bar)
             for k in (evaluations[0][2] or {})] if evaluations else []
    steps = [s for s in steps if s is not None]
    return min(steps) if steps else None


def _mean(values):
    return statistics.fmean(values) if values else None


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"min": None, "max": None, "std": None}
    return {"min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _ratio(a, b):
    return a / b if a is not None and b else None


def best_lr(finals):
    """The rate with the higher mean final accuracy (the first on a tie).

    `finals`: rate -> list of final accuracies (one per seed).
    """
    return max(finals, key=lambda lr: (_mean(finals[lr]), -list(finals).index(lr)))


def _method_at_lr(seeds, bar, never):
    """Per-seed and mean numbers of one method at one rate."""
    per_seed, full_steps, exit_steps, finals, exit_finals = {}, [], [], [], {}
    for seed, evaluations in seeds.items():
        steps = steps_to_bar([(e[0], e[1]) for e in evaluations], bar)
        last = evaluations[-1]
        record = {"steps_to_bar": steps, "final_accuracy": last[1],
                  "evaluations": [list(e[:2]) + ([e[2]] if e[2] else [])
                                  for e in evaluations]}
        full_steps.append(steps)
        finals.append(last[1])
        if last[2]:
            record["exit_steps_to_bar"] = exit_steps_to_bar(evaluations, bar)
            record["final_exit_accuracy"] = dict(last[2])
            exit_steps.append(record["exit_steps_to_bar"])
            for k, accuracy in last[2].items():
                exit_finals.setdefault(k, []).append(accuracy)
        per_seed[str(seed)] = record
    summary = {
        "steps_to_bar": _mean([never if s is None else s for s in full_steps]),
        "reached": all(s is not None for s in full_steps),
        "steps_to_bar_spread": _spread(full_steps),
        "final_accuracy": _mean(finals),
        "final_accuracy_spread": _spread(finals),
    }
    if exit_finals:
        summary.update(
            exit_steps_to_bar=_mean([never if s is None else s for s in exit_steps]),
            exit_reached=all(s is not None for s in exit_steps),
            exit_steps_to_bar_spread=_spread(exit_steps),
            final_exit_accuracy={k: _mean(v) for k, v in exit_finals.items()})
    summary["seeds"] = per_seed
    return summary


def summarize(curves, budget, eval_every, margin=BAR_MARGIN):
    """The bar, best rates, ratios and per-rate numbers of one model.

    Args:
        curves: method ("al", "bp") -> rate (str) -> seed -> evaluations,
            each `(step, full-path accuracy, {exit: accuracy} or None)` in
            training order (the last one is the final accuracy).
        budget: the step budget; a run that never reaches the bar counts
            as `budget + eval_every` steps in the means.
        eval_every: steps between evaluations.
        margin: the bar is BP's mean final accuracy at its best rate minus
            this.

    Returns:
        A dict: `bar`, `al_best_lr`, `bp_best_lr`, `al_steps_over_bp`,
        `al_reached`, `bp_reached`, `al_exit_steps_over_bp`,
        `al_exit_reached`, `al_minus_bp_accuracy`, `meets_targets`, and
        `per_lr` (rate -> the same three ratios, `al` and `bp` numbers).
    """
    never = budget + eval_every
    finals = {m: {lr: [seeds[s][-1][1] for s in seeds] for lr, seeds in curves[m].items()}
              for m in METHODS}
    best = {m: best_lr(finals[m]) for m in METHODS}
    bar = _mean(finals["bp"][best["bp"]]) - margin
    per_lr = {}
    for lr in curves["al"]:
        numbers = {m: _method_at_lr(curves[m][lr], bar, never)
                   for m in METHODS if lr in curves[m]}
        al, bp = numbers.get("al"), numbers.get("bp")
        per_lr[lr] = {
            "al_steps_over_bp": _ratio(al["steps_to_bar"], bp and bp["steps_to_bar"]),
            "al_exit_steps_over_bp": _ratio(al.get("exit_steps_to_bar"),
                                            bp and bp["steps_to_bar"]),
            "al_minus_bp_accuracy": (al["final_accuracy"] - bp["final_accuracy"]
                                     if bp else None),
            **numbers}
    for lr in curves["bp"]:
        if lr not in per_lr:
            per_lr[lr] = {"bp": _method_at_lr(curves["bp"][lr], bar, never)}
    al = per_lr[best["al"]]["al"]
    bp = per_lr[best["bp"]]["bp"]
    result = {
        "bar": bar,
        "al_best_lr": best["al"],
        "bp_best_lr": best["bp"],
        "al_steps_to_bar": al["steps_to_bar"],
        "al_exit_steps_to_bar": al.get("exit_steps_to_bar"),
        "bp_steps_to_bar": bp["steps_to_bar"],
        "al_steps_over_bp": _ratio(al["steps_to_bar"], bp["steps_to_bar"]),
        "al_reached": al["reached"],
        "al_exit_steps_over_bp": _ratio(al.get("exit_steps_to_bar"), bp["steps_to_bar"]),
        "al_exit_reached": al.get("exit_reached"),
        "bp_reached": bp["reached"],
        "al_final_accuracy": al["final_accuracy"],
        "al_final_exit_accuracy": al.get("final_exit_accuracy"),
        "bp_final_accuracy": bp["final_accuracy"],
        "al_minus_bp_accuracy": al["final_accuracy"] - bp["final_accuracy"],
        "never_counts_as": never,
    }
    result["meets_targets"] = {
        "steps": (result["al_reached"] and result["al_steps_over_bp"] is not None
                  and result["al_steps_over_bp"] <= 1.0),
        "accuracy": result["al_minus_bp_accuracy"] >= 0}
    result["per_lr"] = per_lr
    return result


# ---------------------------------------------------------- the child process


def _sizes(spec):
    sizes = spec.smoke if _SMOKE.value else spec.full if _FULL.value else spec.default
    eval_every = _EVAL_EVERY.value or sizes.eval_every
    budget = _STEPS.value or sizes.budget
    return dataclasses.replace(sizes, eval_every=eval_every,
                               budget=max(eval_every, budget // eval_every * eval_every))


def _options_and_config(spec, method):
    """The config (None for digits_mlp) and the options given to models.get:
    the config's model_options that differ from models.get's defaults."""
    from al_keras import models
    from al_keras.training import config_lib

    if not spec.config:
        return None, spec.arg, dict(spec.options)
    config = config_lib.load_config_module(
        os.path.join(ROOT, "configs", f"{spec.config}.py")).get_config(
            f"{spec.arg},method={method}")
    defaults = models.check_options(config.model, method, {})
    options = {k: v for k, v in config.model_options.to_dict().items()
               if v is not None and (k not in defaults or defaults[k] != v)}
    options.update(spec.options)
    return config, config.model, options


def _data(spec, config, sizes, seed):
    """The training batches (endless), test batches, input shape and `Data`."""
    from al_keras.data import datasets

    if spec.dataset == "digits":
        import tensorflow as tf

        from al_keras.data.digits import load_digits

        (x, y), (x_test, y_test) = load_digits(seed=0)  # The fixed split.
        x, y = x[:sizes.train or None], y[:sizes.train or None]
        x_test, y_test = x_test[:sizes.test or None], y_test[:sizes.test or None]
        data = datasets.Data(tf.data.Dataset.from_tensor_slices((x, y)),
                             tf.data.Dataset.from_tensor_slices((x_test, y_test)),
                             input_shape=x.shape[1:], num_classes=10,
                             num_train=len(x), num_test=len(x_test))
        data = datasets.pipelines(data, batch_size=32, test_batch_size=512, seed=seed,
                                  augment=None)
    else:
        text = spec.dataset == "wordnet"
        data_dir = _WORDNET_DIR.value if text else _FASHION_MNIST_DIR.value
        extra = dict(sequence_length=config.sequence_length, vocab_size=config.vocab_size,
                     with_words=config.with_words) if text else {}
        data = datasets.load(spec.dataset, batch_size=config.batch_size, seed=seed,
                             data_dir=data_dir, test_batch_size=500,
                             max_train_examples=sizes.train, max_test_examples=sizes.test,
                             **extra)
    train, test, shape = data.train_epochs(0), data.test, tuple(data.input_shape)
    if spec.pad_to:
        pad = (spec.pad_to - shape[0]) // 2, (spec.pad_to - shape[1]) // 2

        def padded(x, y):
            return _pad(x, pad, spec.pad_to), y

        train, test = train.map(padded), test.map(padded)
        shape = (spec.pad_to, spec.pad_to) + shape[2:]
    return train, test, shape, data


def _pad(images, pad, size):
    import tensorflow as tf

    return tf.image.pad_to_bounding_box(images, pad[0], pad[1], size, size)


def _accuracy_of(model):
    """`accuracy(test)`: `model`'s test accuracy on its default path, counted
    exactly (correct / total, as `ALModel.evaluate_exits` counts; Keras'
    metric is a float32)."""
    import tensorflow as tf

    @tf.function
    def count(x, y):
        predicted = tf.argmax(model(x, training=False), -1, output_type=tf.int32)
        return tf.reduce_sum(tf.cast(predicted == tf.cast(y, tf.int32), tf.int64))

    def accuracy(test):
        correct, total = 0, 0
        for x, y in test:
            correct += int(count(x, y))
            total += int(x.shape[0])
        return correct / total

    return accuracy


def run_child(name, method, lrs, seeds):
    """Trains `name` with `method` at every rate and seed; returns the curves."""
    started = time.perf_counter()
    import keras
    import tensorflow as tf

    from al_keras import models
    from al_keras.data.errors import DataFileError, DatasetUnavailableError

    spec = MODELS[name]
    sizes = _sizes(spec)
    config, zoo_name, options = _options_and_config(spec, method)
    if method == "al" and _ORIGINAL.value:
        options["original"] = True
    curves, seconds = {}, {}
    data_seconds = 0.0
    for seed in seeds:
        since = time.perf_counter()
        try:
            loaded = _data(spec, config, sizes, seed)
        except (DataFileError, DatasetUnavailableError) as e:
            return {"skipped": str(e).splitlines()[0]}
        data_seconds += time.perf_counter() - since
        for lr in lrs:
            train, test, shape, data = loaded
            keras.backend.clear_session()
            keras.utils.set_random_seed(seed)  # The initial weights.
            since = time.perf_counter()
            extra = ({"vocab_size": data.preprocessor.vocabulary_size()}
                     if data.preprocessor is not None else {})
            model = models.get(zoo_name, input_shape=shape, num_classes=data.num_classes,
                               method=method, **options, **extra)
            model.compile(optimizer=keras.optimizers.Adam(float(lr)), metrics=["accuracy"],
                          jit_compile=True, steps_per_execution=sizes.eval_every)
            evaluations, clock, intervals, evals = [], {"eval": 0.0}, [], []
            accuracy = _accuracy_of(model)

            class Evaluate(keras.callbacks.Callback):
                """The test accuracy every `eval_every` steps (an epoch here)."""

                def on_epoch_begin(self, epoch, logs=None):
                    clock["interval"] = time.perf_counter()

                def on_epoch_end(self, epoch, logs=None):
                    since = time.perf_counter()
                    intervals.append(round(since - clock["interval"], 3))
                    step = (epoch + 1) * sizes.eval_every
                    if method == "al":
                        exits = model.evaluate_exits(test)
                        evaluations.append((step, exits[model.num_blocks],
                                            {str(k): v for k, v in exits.items()}))
                    else:
                        evaluations.append((step, accuracy(test), None))
                    evals.append(round(time.perf_counter() - since, 3))
                    clock["eval"] += evals[-1]

            build = time.perf_counter() - since
            since = time.perf_counter()
            model.fit(train, epochs=sizes.budget // sizes.eval_every,
                      steps_per_epoch=sizes.eval_every, verbose=0, callbacks=[Evaluate()])
            fit = time.perf_counter() - since
            curves.setdefault(lr, {})[str(seed)] = evaluations
            seconds.setdefault(lr, {})[str(seed)] = {
                "build": round(build, 2), "train": round(fit - clock["eval"], 2),
                "eval": round(clock["eval"], 2), "intervals": intervals, "evals": evals}
            print(f"{name} {method} lr {lr} seed {seed}: final {evaluations[-1][1]:.4f}, "
                  f"train {fit - clock['eval']:.1f} s, eval {clock['eval']:.1f} s",
                  file=sys.stderr, flush=True)
    return {"curves": curves, "seconds": seconds, "data_seconds": round(data_seconds, 2),
            "model": zoo_name, "model_options": options, "input_shape": list(shape),
            "process_seconds": round(time.perf_counter() - started, 2),
            "tensorflow": tf.__version__, "keras": keras.__version__}


# --------------------------------------------------------- the parent process


def _missing_data(spec):
    """Why `spec`'s data cannot be had here (one line), or None."""
    if spec.dataset == "fashion_mnist":
        folder = _FASHION_MNIST_DIR.value
        stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        absent = [s for s in stems if not any(
            os.path.isfile(os.path.join(folder, s + ext)) for ext in ("", ".gz"))]
        if absent:
            return (f"no Fashion-MNIST idx files {absent} in {folder} (apt-get install "
                    "dataset-fashion-mnist, or --fashion_mnist_dir=DIR)")
    if spec.dataset == "wordnet":
        if not os.path.isfile(os.path.join(_WORDNET_DIR.value, "data.noun")):
            return (f"no WordNet data.noun in {_WORDNET_DIR.value} (apt-get install "
                    "wordnet-base, or --wordnet_dir=DIR)")
    return None


def _check_original():
    """Stops the run if this al_keras's `models.get` has no `original=True`."""
    from al_keras import models

    try:
        models.get("mlp", input_shape=(4,), num_classes=2, method="al", original=True)
    except (TypeError, ValueError) as e:
        if "original" not in str(e):
            raise
        raise app.UsageError(
            "--original: this al_keras's models.get does not accept original=True "
            f"(the paper's settings preset) yet: {str(e).splitlines()[0]}") from None


def _spawn(name, method, lrs, seeds):
    command = [sys.executable, __file__, f"--child={name}:{method}",
               f"--lrs={','.join(lrs)}", f"--seeds={','.join(map(str, seeds))}",
               f"--fashion_mnist_dir={_FASHION_MNIST_DIR.value}",
               f"--wordnet_dir={_WORDNET_DIR.value}"]
    command += ["--full"] * _FULL.value + ["--smoke"] * _SMOKE.value
    command += ["--original"] * _ORIGINAL.value
    command += [f"--steps={_STEPS.value}"] * bool(_STEPS.value)
    command += [f"--eval_every={_EVAL_EVERY.value}"] * bool(_EVAL_EVERY.value)
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"error": f"{name} {method} failed (exit {proc.returncode}): {tail[0]}",
                "stderr_tail": proc.stderr[-3000:]}
    return json.loads(lines[-1][len("RESULT "):])


def _versions():
    from importlib import metadata

    versions = {}
    for key, packages in (("tensorflow", ("tensorflow", "tensorflow-cpu")),
                          ("keras", ("keras",))):
        for package in packages:
            try:
                versions[key] = metadata.version(package)
                break
            except metadata.PackageNotFoundError:
                versions[key] = None
    return versions


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _steps(numbers, key="steps_to_bar", reached="reached"):
    """`numbers[key]` as a table cell, marked where some seed never got there."""
    if numbers is None or numbers.get(key) is None:
        return "-"
    return f"{numbers[key]:.1f}" + ("" if numbers[reached] else " (never)")


def _final(numbers):
    if numbers is None:
        return "-"
    spread = numbers["final_accuracy_spread"]
    return f"{numbers['final_accuracy']:.4f} ({spread['min']:.4f}-{spread['max']:.4f})"


def _signed(value):
    return "-" if value is None else f"{value:+.4f}"


def _tables(report):
    """The markdown tables: one row per model, then one per model and rate."""
    rows = ["| model | bar | BP lr | AL lr | BP steps | AL steps | AL exit steps | "
            "al_steps_over_bp | al_exit_steps_over_bp | BP final | AL final | "
            "al_minus_bp_accuracy | targets |", "|" + "---|" * 13]
    per_lr = ["| model | lr | BP steps | AL steps | AL exit steps | al_steps_over_bp | "
              "al_exit_steps_over_bp | BP final (min-max) | AL final (min-max) | "
              "al_minus_bp_accuracy |", "|" + "---|" * 10]
    for name, r in report["models"].items():
        if "bar" not in r:
            rows.append(f"| {name} | " + (f"skipped: {r['skipped']}" if "skipped" in r
                                          else f"error: {r.get('error')}") + " |")
            continue
        al = {"steps_to_bar": r["al_steps_to_bar"], "reached": r["al_reached"],
              "exit_steps_to_bar": r["al_exit_steps_to_bar"],
              "exit_reached": r["al_exit_reached"]}
        bp = {"steps_to_bar": r["bp_steps_to_bar"], "reached": r["bp_reached"]}
        targets = ("steps " + ("yes" if r["meets_targets"]["steps"] else "no")
                   + ", accuracy " + ("yes" if r["meets_targets"]["accuracy"] else "no"))
        rows.append(
            f"| {name} | {r['bar']:.4f} | {r['bp_best_lr']} | {r['al_best_lr']} | "
            f"{_steps(bp)} | {_steps(al)} | {_steps(al, 'exit_steps_to_bar', 'exit_reached')} | "
            f"{_fmt(r['al_steps_over_bp'])} | {_fmt(r['al_exit_steps_over_bp'])} | "
            f"{r['bp_final_accuracy']:.4f} | {r['al_final_accuracy']:.4f} | "
            f"{_signed(r['al_minus_bp_accuracy'])} | {targets} |")
        for lr, n in r["per_lr"].items():
            al, bp = n.get("al"), n.get("bp")
            per_lr.append(
                f"| {name} | {lr} | {_steps(bp)} | {_steps(al)} | "
                f"{_steps(al, 'exit_steps_to_bar', 'exit_reached')} | "
                f"{_fmt(n.get('al_steps_over_bp'))} | {_fmt(n.get('al_exit_steps_over_bp'))} | "
                f"{_final(bp)} | {_final(al)} | {_signed(n.get('al_minus_bp_accuracy'))} |")
    return ("\n".join(rows) + "\n\nPer rate (steps: mean over seeds to the same bar):\n\n"
            + "\n".join(per_lr))


def _summary(report):
    done = {n: r for n, r in report["models"].items() if "meets_targets" in r}
    steps = [n for n, r in done.items() if r["meets_targets"]["steps"]]
    accuracy = [n for n, r in done.items() if r["meets_targets"]["accuracy"]]
    return {"steps_target": "al_steps_over_bp <= 1.0",
            "accuracy_target": "al_minus_bp_accuracy >= 0",
            "meets_steps_target": steps, "meets_accuracy_target": accuracy,
            "meets_both": [n for n in steps if n in accuracy],
            "measured": list(done),
            "not_measured": [n for n in report["models"] if n not in done]}


def run_parent():
    unknown = sorted(set(_MODELS.value) - set(MODELS))
    if unknown:
        raise app.UsageError(f"Unknown models {unknown}; known: {sorted(MODELS)}.")
    if _FULL.value and _SMOKE.value:
        raise app.UsageError("--full and --smoke exclude each other.")
    seeds = [int(s) for s in _SEEDS.value]
    lrs = [str(float(lr)) for lr in _LRS.value]
    if _SMOKE.value:
        seeds = seeds if flags.FLAGS["seeds"].present else [0]
        lrs = lrs if flags.FLAGS["lrs"].present else ["0.001"]
    if not seeds or not lrs:
        raise app.UsageError("--seeds and --lrs need at least one value each.")
    for flag in (_STEPS, _EVAL_EVERY):
        if flag.value is not None and flag.value < 1:
            raise app.UsageError(f"--{flag.name} must be >= 1, got {flag.value}.")
    if _ORIGINAL.value:
        _check_original()
    mode = "smoke" if _SMOKE.value else "full" if _FULL.value else "default"
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(__file__, os.getcwd())] + sys.argv[1:]),
        "hardware": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                     "processor": platform.processor() or platform.machine()},
        "versions": {**_versions(), "python": platform.python_version()},
        "settings": {"mode": mode, "seeds": seeds, "lrs": lrs, "optimizer": "Adam, constant",
                     "bar": f"BP's mean final accuracy at its best rate - {BAR_MARGIN}",
                     "original": _ORIGINAL.value, "jit_compile": True,
                     "steps_per_execution": "eval_every"},
        "models": {},
    }
    failed = False
    started = time.perf_counter()
    estimate = sum(estimate_seconds(n, _sizes(MODELS[n]), len(seeds), len(lrs))
                   for n in _MODELS.value)
    about = f"{estimate / 60:.0f} min" if estimate >= 120 else f"{estimate:.0f} s"
    print(f"{mode} run of {', '.join(_MODELS.value)}: seeds {seeds}, rates {lrs}; about "
          f"{about} on a 2-core CPU", flush=True)
    for name in _MODELS.value:
        spec = MODELS[name]
        sizes = _sizes(spec)
        settings = {"train_examples": sizes.train or "all", "test_examples": sizes.test or "all",
                    "step_budget": sizes.budget, "eval_every": sizes.eval_every,
                    "dataset": spec.dataset,
                    "config": f"configs/{spec.config}.py:{spec.arg}" if spec.config else None,
                    "options": spec.options, "pad_to": spec.pad_to or None}
        reason = _missing_data(spec)
        if reason:
            report["models"][name] = {"skipped": reason, "settings": settings}
            print(f"{name}: skipped: {reason}", flush=True)
            continue
        since = time.perf_counter()
        results = {m: _spawn(name, m, lrs, seeds) for m in METHODS}
        bad = {m: r for m, r in results.items() if "curves" not in r}
        if bad:
            skipped = [r["skipped"] for r in bad.values() if "skipped" in r]
            if skipped:
                report["models"][name] = {"skipped": skipped[0], "settings": settings}
                print(f"{name}: skipped: {skipped[0]}", flush=True)
            else:
                failed = True
                report["models"][name] = {"error": "; ".join(r["error"] for r in bad.values()),
                                          "stderr_tail": {m: r.get("stderr_tail")
                                                          for m, r in bad.items()},
                                          "settings": settings}
                print(f"{name}: error: {report['models'][name]['error']}", flush=True)
            continue
        curves = {m: {lr: {seed: [(e[0], e[1], e[2]) for e in evaluations]
                           for seed, evaluations in by_seed.items()}
                      for lr, by_seed in results[m]["curves"].items()} for m in METHODS}
        numbers = summarize(curves, sizes.budget, sizes.eval_every)
        numbers["settings"] = {
            **settings, "bar": numbers["bar"], "model": results["al"]["model"],
            "input_shape": results["al"]["input_shape"],
            "model_options": {m: results[m]["model_options"] for m in METHODS}}
        numbers["seconds"] = {"wall": round(time.perf_counter() - since, 1),
                              **{m: {k: results[m][k] for k in (
                                  "process_seconds", "data_seconds", "seconds")}
                                 for m in METHODS}}
        report["versions"].update({k: results["al"][k] for k in ("tensorflow", "keras")})
        report["models"][name] = numbers
        print(f"{name}: bar {numbers['bar']:.4f}, al_steps_over_bp "
              f"{_fmt(numbers['al_steps_over_bp'])}, al_minus_bp_accuracy "
              f"{numbers['al_minus_bp_accuracy']:+.4f} "
              f"({numbers['seconds']['wall']:.0f} s)", flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["summary"] = _summary(report)
    s = report["summary"]
    print(f"\n{mode} run, seeds {seeds}, rates {lrs}, {os.cpu_count()} cores, "
          f"{report['seconds']:.0f} s\n")
    print(_tables(report))
    print(f"\nsummary: steps target ({s['steps_target']}) met by {s['meets_steps_target']}; "
          f"accuracy target ({s['accuracy_target']}) met by {s['meets_accuracy_target']}; "
          f"both by {s['meets_both']}; not measured: {s['not_measured']}")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(report, f, indent=2)
    return 1 if failed else 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}.")
    if _CHILD.value:
        name, method = _CHILD.value.split(":")
        result = run_child(name, method, [str(float(lr)) for lr in _LRS.value],
                           [int(s) for s in _SEEDS.value])
        print("RESULT " + json.dumps(result, default=str), flush=True)
        return 0
    return run_parent()


if __name__ == "__main__":
    app.run(main)
