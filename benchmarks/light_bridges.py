"""Original against light bridges on Fashion-MNIST: accuracy and step time.

    python benchmarks/light_bridges.py \
        --data_dir=/usr/share/datasets/fashion-mnist --json=/tmp/light.json

For the MLP and the CNN of configs/fashion_mnist.py, trains in turn, each
with `train.py`'s library in a fresh process, the same seed and data:

* `al`: AL with the original bridges (Flatten -> Dense 5n -> Dense n);
* `al_light`: AL with the light bridges (`:light`, `config_lib.LIGHT_BRIDGE`);
* `bp`: the BP twin with the original head;
* `bp_light`: the BP twin whose head mirrors the light last bridge.

Each run: `--epochs` epochs (10) on the MLP's 60,000 and the CNN's first
20,000 training images (`--max_train_examples`, as docs/reproduction.md's
reproduction table), the whole test set, Adam at `--lr` (1e-3: every exit
trains within a few epochs) under the original schedule, batch 32, XLA.
Printed per model: test accuracy (the full path;
for AL also the best exit), mean training seconds per step over the
epochs after the first (no compilation), and the ratios of each AL
setting's step time to BP's.  `--json PATH` writes the rows.  The runs'
workdirs are kept under `--workdir`.

A step time here comes from whole epochs of `fit` one after the other;
`benchmarks/step_cost.py --bridge=light` measures the same ratio with the
two models alternating in one process.
"""

import json
import os
import subprocess
import sys

from absl import app, flags

_DATA_DIR = flags.DEFINE_string("data_dir", "/usr/share/datasets/fashion-mnist",
                                "Fashion-MNIST folder (idx files) or TFDS dir.")
_MODELS = flags.DEFINE_list("models", ["mlp", "cnn"], "Models to train.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Epochs per run.")
_MAX_TRAIN = flags.DEFINE_list(
    "max_train_examples", ["mlp:0", "cnn:20000"],
    "Training images per model, model:N (0: all 60,000), as docs/reproduction.md's "
    "reproduction table.")
_VARIANTS = flags.DEFINE_list("variants", ["al", "al_light", "bp", "bp_light"],
                              "Variants to train (see above).")
_LR = flags.DEFINE_float("lr", 1e-3, "Learning rate.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every run.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/al_keras_light_bridges",
                               "Folder of the runs' workdirs.")
_OVERRIDES = flags.DEFINE_list(
    "overrides", [], "More config keys for every run, key=value, e.g. "
    "model_options.label_units=256.")
_JSON = flags.DEFINE_string("json", None, "Write the rows to this file.")

VARIANTS = {"al": "method=al", "al_light": "method=al,light",
            "bp": "method=bp", "bp_light": "method=bp,light"}
_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def max_train_examples(model):
    limits = dict(item.split(":") for item in _MAX_TRAIN.value)
    return int(limits.get(model, 0))


def train(model, variant):
    """Trains one variant in a fresh process; returns its results and steps."""
    workdir = os.path.join(_WORKDIR.value, f"{model}_{variant}")
    args = [
        sys.executable, os.path.join(_ROOT, "train.py"),
        f"--config={os.path.join(_ROOT, 'configs', 'fashion_mnist.py')}:"
        f"model={model},{VARIANTS[variant]}",
        f"--workdir={workdir}",
        f"--config.data_dir={_DATA_DIR.value}",
        f"--config.epochs={_EPOCHS.value}",
        f"--config.max_train_examples={max_train_examples(model)}",
        f"--config.lr={_LR.value}",
        f"--config.seed={_SEED.value}",
        "--config.export=false",
    ] + [f"--config.{override}" for override in _OVERRIDES.value]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(workdir, "metrics.csv")) as f:
        header, *rows = [line.strip().split(",") for line in f if line.strip()]
    seconds = [float(row[header.index("epoch_seconds")]) for row in rows]
    steps = -(-results["num_train"] // 32)
    later = seconds[1:] or seconds
    return results, sum(later) / len(later) / steps


def main(argv):
    del argv
    rows = []
    print("| model | bridges | test accuracy | best exit | ms/step | "
          "/ BP step | / BP light step |")
    print("|---|---|---|---|---|---|---|")
    for model in _MODELS.value:
        measured = {v: train(model, v) for v in _VARIANTS.value}
        bp_step = measured["bp"][1] if "bp" in measured else float("nan")
        bp_light_step = (measured["bp_light"][1] if "bp_light" in measured
                         else float("nan"))
        for variant, (results, step) in measured.items():
            row = {
                "model": model, "variant": variant,
                "test_accuracy": round(results["test_accuracy"], 4),
                "best_exit_accuracy": round(max(
                    results.get("exit_test_accuracy") or
                    [results["test_accuracy"]]), 4),
                "ms_per_step": round(step * 1e3, 2),
                "num_train": results["num_train"],
                "over_bp_step": round(step / bp_step, 3),
                "over_bp_light_step": round(step / bp_light_step, 3),
                "params": results["params"],
            }
            rows.append(row)
            print(f"| {model} | {variant} | {row['test_accuracy']:.4f} | "
                  f"{row['best_exit_accuracy']:.4f} | {row['ms_per_step']} | "
                  f"{row['over_bp_step']:.2f} | {row['over_bp_light_step']:.2f} |",
                  flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"epochs": _EPOCHS.value, "lr": _LR.value, "seed": _SEED.value,
                       "overrides": list(_OVERRIDES.value),
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
