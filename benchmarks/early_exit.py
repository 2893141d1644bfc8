"""Adaptive early exit: accuracy against compute, and batch-1 latency.

    python benchmarks/early_exit.py --json=/tmp/early_exit.json \
        [--models=digits_mlp,fashion_cnn,fashion_cnn_light] [--epochs=3] \
        [--fashion_mnist_dir=/usr/share/datasets/fashion-mnist] \
        [--workdir=/tmp/al_keras_early_exit] [--latency_examples=300] [--png=PATH]

Each model is trained by `train.py`'s library (`train_lib.train_and_evaluate`)
into `<workdir>/<model>`, holding out `--validation_examples` training
examples; a workdir that is already trained is loaded instead (its last
checkpoint), so a second call only measures.  Models:

  digits_mlp         configs/digits.py (the quickstart's MLP; 200 held out,
                     15 epochs: its config's)
  fashion_cnn        configs/fashion_mnist.py:model=cnn, the original bridges
  fashion_cnn_light  configs/fashion_mnist.py:model=cnn,light

(the Fashion-MNIST CNNs on the first `--max_train_examples` training
images, with the last `--validation_examples` of the 60,000 held out,
`--epochs` epochs, Adam `--lr` at a constant rate).

For each model: the threshold calibrated on the validation examples
(`al_keras.exits.calibrate`, `--max_accuracy_drop`); on the test set the
accuracy and the mean FLOPs per example (TensorFlow's profiler, batch of
one) over a sweep of thresholds, as a table and a PNG, and always using the
single best fixed exit (the shallowest within the drop on validation) for
comparison; the batch-1 latency of the exported `adaptive` signature
against `serving_default` (`model.export` at the calibrated threshold,
`<workdir>/<model>/adaptive_export`, loaded in this process, each
example served alone, the two alternated example by example after a
warm-up; the median call).

JSON (one key per model): `flops_saved` and `accuracy_drop` (test, at the
calibrated threshold), `batch1_speedup` (serving_default's median latency
over adaptive's), `threshold`, `mean_exit`, `exit_fractions`, the fixed
exit's numbers (`best_fixed_exit`), `adaptive_wins` (fewer FLOPs than the
fixed exit, and within the drop on the test set), `latency_ms`, `sweep`; and
`targets`: Fashion-MNIST CNN at least 30% fewer FLOPs at at most 0.5
points drop, and batch-1 at least 1.3x faster.
"""

import json
import os
import statistics
import time

from absl import app, flags, logging

_MODELS = flags.DEFINE_list("models", ["digits_mlp", "fashion_cnn_light", "fashion_cnn"],
                            "Models to measure.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs of the Fashion-MNIST CNNs.")
_LR = flags.DEFINE_float("lr", 1e-3, "Adam's learning rate of the CNNs (constant).")
_MAX_TRAIN = flags.DEFINE_integer("max_train_examples", 20000,
                                  "Fashion-MNIST training images (the first N).")
_VALIDATION = flags.DEFINE_integer("validation_examples", 5000,
                                   "Fashion-MNIST images held out for calibration "
                                   "(the last N of the training split).")
_DROP = flags.DEFINE_float("max_accuracy_drop", 0.005, "Accuracy the adaptive exit may lose.")
_CONFIDENCE = flags.DEFINE_enum("confidence", "max_prob", ["max_prob", "margin"],
                                "Confidence measure.")
_FASHION = flags.DEFINE_string("fashion_mnist_dir", "/usr/share/datasets/fashion-mnist",
                               "Folder of the Fashion-MNIST idx files.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/al_keras_early_exit",
                               "Where the models are trained (or found trained).")
_LATENCY = flags.DEFINE_integer("latency_examples", 300,
                                "Test examples served one at a time per signature.")
_JSON = flags.DEFINE_string("json", None, "Write the results here.")
_PNG = flags.DEFINE_string("png", None, "The accuracy/compute plot (default: next to "
                           "--json, or <workdir>/early_exit.png).")

MODELS = {  # name -> (config file, config argument, overrides)
    "digits_mlp": ("digits", None, {"validation_examples": 200}),
    "fashion_cnn": ("fashion_mnist", "model=cnn", {}),
    "fashion_cnn_light": ("fashion_mnist", "model=cnn,light", {}),
}
SHOWN_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def model_config(name):
    from al_keras.training import config_lib

    file, arg, overrides = MODELS[name]
    config = config_lib.load_config_module(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "configs", f"{file}.py")).get_config(arg)
    if file == "fashion_mnist":
        overrides = dict(data_dir=_FASHION.value, epochs=_EPOCHS.value, lr=_LR.value,
                         lr_schedule="constant", max_train_examples=_MAX_TRAIN.value,
                         validation_examples=_VALIDATION.value)
    for key, value in overrides.items():
        setattr(config, key, value)
    config.max_exit_accuracy_drop = _DROP.value
    config.exit_confidence = _CONFIDENCE.value
    return config


def trained(name):
    """(model with its calibrated threshold, data, results.json) of `name`."""
    import keras

    from al_keras.data import datasets
    from al_keras.training import train_lib
    from al_keras.training.callbacks import checkpoints

    config = model_config(name)
    workdir = os.path.join(_WORKDIR.value, name)
    results = train_lib.train_and_evaluate(config, workdir, verbose=0)
    _, last = checkpoints(os.path.join(workdir, "checkpoints"))[-1]
    model = keras.models.load_model(last)
    model.exit_threshold = results["adaptive_exit"]["threshold"]
    data = datasets.load(config.dataset, batch_size=config.batch_size,
                         data_dir=config.data_dir or None,
                         test_batch_size=config.test_batch_size,
                         max_train_examples=config.max_train_examples,
                         validation_examples=config.validation_examples, seed=config.seed)
    return model, data, results, workdir


def batch1_latency(export_dir, x, warmup=20):
    """Median seconds of one call of `serving_default` and of `adaptive` on
    one example, alternated example by example."""
    import tensorflow as tf

    loaded = tf.saved_model.load(export_dir)
    signatures = {k: loaded.signatures[k] for k in ("serving_default", "adaptive")}
    examples = [tf.constant(x[i:i + 1]) for i in range(len(x))]
    for example in examples[:warmup]:
        for fn in signatures.values():
            fn(inputs=example)
    times = {k: [] for k in signatures}
    for example in examples:
        for key, fn in signatures.items():
            start = time.perf_counter()
            fn(inputs=example)["probabilities"].numpy()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(name):
    import numpy as np

    from al_keras.core import early_exit

    model, data, results, workdir = trained(name)
    calibrated = results["adaptive_exit"]
    threshold = calibrated["threshold"]
    threshold = np.inf if threshold is None else threshold
    flops = calibrated["flops"]
    probabilities, labels = early_exit.exit_outputs(model, data.test)
    sweep = early_exit.tradeoff(probabilities, labels, flops, calibrated["confidence"])
    at = early_exit.tradeoff(probabilities, labels, flops, calibrated["confidence"],
                             thresholds=[threshold, np.inf])
    full_flops = float(flops["exits"][-1])
    fixed = calibrated["best_fixed_exit"]["exit"]
    fixed_accuracy = float((probabilities[:, fixed - 1].argmax(-1) == labels).mean())
    fixed_flops = float(flops["exits"][fixed - 1])
    x = np.concatenate([xb.numpy() for xb, _ in data.test.unbatch().take(
        _LATENCY.value).batch(_LATENCY.value)])
    export_dir = os.path.join(workdir, "adaptive_export")  # At this calibration.
    model.export(export_dir, overwrite=True)
    latency = batch1_latency(export_dir, x)
    adaptive_accuracy, full_accuracy = (float(a) for a in at["accuracy"])
    row = {
        "threshold": calibrated["threshold"], "confidence": calibrated["confidence"],
        "validation_examples": calibrated["num_examples"],
        "test_accuracy_full": full_accuracy, "test_accuracy_adaptive": adaptive_accuracy,
        "accuracy_drop": full_accuracy - adaptive_accuracy,
        "flops_saved": 1.0 - float(at["flops"][0]) / full_flops,
        "mean_exit": float(at["mean_exit"][0]),
        "exit_fractions": [float(f) for f in at["exit_fractions"][0]],
        "full_flops": full_flops, "flops": flops,
        "exit_test_accuracy": [float(a) for a in
                               (probabilities.argmax(-1) == labels[:, None]).mean(0)],
        "best_fixed_exit": {"exit": fixed, "test_accuracy": fixed_accuracy,
                            "flops_saved": 1.0 - fixed_flops / full_flops},
        "latency_ms": {k: 1e3 * v for k, v in latency.items()},
        "batch1_speedup": latency["serving_default"] / latency["adaptive"],
        "epochs": results["epochs"], "num_train": results["num_train"],
        "sweep": [{"threshold": float(t), "test_accuracy": float(a),
                   "flops_saved": 1.0 - float(f) / full_flops, "mean_exit": float(m)}
                  for t, a, f, m in zip(sweep["threshold"], sweep["accuracy"],
                                        sweep["flops"], sweep["mean_exit"])
                  if any(abs(t - s) < 1e-9 for s in SHOWN_THRESHOLDS) or np.isinf(t)],
        "curve": {"flops": [float(f) / full_flops for f in sweep["flops"]],
                  "accuracy": [float(a) for a in sweep["accuracy"]]},
    }
    row["adaptive_wins"] = (row["flops_saved"] > row["best_fixed_exit"]["flops_saved"]
                            and row["accuracy_drop"] <= _DROP.value)
    return row


def table(name, row):
    from al_keras.core import early_exit

    lines = [f"{name}: threshold {row['threshold']} ({row['confidence']}, "
             f"{row['validation_examples']} validation examples), exits "
             + ", ".join(f"{a:.4f}" for a in row["exit_test_accuracy"]),
             "| threshold | test accuracy | FLOPs saved | mean exit |", "|---|---|---|---|"]
    for r in row["sweep"]:
        lines.append(f"| {r['threshold']:g} | {r['test_accuracy']:.4f} | "
                     f"{r['flops_saved']:.1%} | {r['mean_exit']:.2f} |")
    fixed = row["best_fixed_exit"]
    lines.append(
        f"calibrated: accuracy {row['test_accuracy_adaptive']:.4f} against "
        f"{row['test_accuracy_full']:.4f} (drop {100 * row['accuracy_drop']:.2f} points), "
        f"{early_exit.describe_saving(row['flops_saved'])}, mean exit {row['mean_exit']:.2f}; "
        f"best fixed exit {fixed['exit']}: {fixed['test_accuracy']:.4f}, "
        f"{early_exit.describe_saving(fixed['flops_saved'])}; adaptive wins: "
        f"{row['adaptive_wins']}")
    lines.append(
        f"batch-1 latency: serving_default {row['latency_ms']['serving_default']:.3f} ms, "
        f"adaptive {row['latency_ms']['adaptive']:.3f} ms: {row['batch1_speedup']:.2f}x")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from al_keras.training.runs import run_colors

    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    for (name, row), color in zip(rows.items(), run_colors(len(rows))):
        curve = sorted(zip(row["curve"]["flops"], row["curve"]["accuracy"]))
        ax.plot([c[0] for c in curve], [c[1] for c in curve], color=color, lw=1.3,
                label=f"{name}: adaptive, thresholds 0 to 1")
        ax.plot(1 - row["flops_saved"], row["test_accuracy_adaptive"], "*", color=color,
                markersize=14, markeredgecolor="black", label=f"{name}: calibrated")
        for exit, accuracy in enumerate(row["exit_test_accuracy"], start=1):
            ax.plot(row["flops"]["exits"][exit - 1] / row["full_flops"], accuracy, "o",
                    color=color, markerfacecolor="none", markersize=7)
            ax.annotate(f"exit {exit}", (row["flops"]["exits"][exit - 1] / row["full_flops"],
                                         accuracy), fontsize=7, xytext=(4, -9),
                        textcoords="offset points")
    ax.set(xlabel="mean FLOPs per example / full path's", ylabel="test accuracy",
           title="Adaptive early exit: accuracy against compute (circles: fixed exits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Not the export's INFO lines.
    unknown = sorted(set(_MODELS.value) - set(MODELS))
    if unknown:
        raise app.UsageError(f"Unknown models {unknown}; known: {sorted(MODELS)}.")
    rows = {}
    for name in _MODELS.value:
        rows[name] = measure(name)
        print(table(name, rows[name]), flush=True)
    fashion = rows.get("fashion_cnn_light") or rows.get("fashion_cnn")
    targets = None
    if fashion is not None:
        targets = {"model": "fashion_cnn_light" if "fashion_cnn_light" in rows else "fashion_cnn",
                   "flops_saved_at_least_30pct": fashion["flops_saved"] >= 0.30,
                   "accuracy_drop_at_most_half_a_point": fashion["accuracy_drop"] <= 0.005,
                   "batch1_speedup_at_least_1.3x": fashion["batch1_speedup"] >= 1.3}
        print("targets:", json.dumps(targets))
    png = _PNG.value or (os.path.splitext(_JSON.value)[0] + ".png" if _JSON.value
                         else os.path.join(_WORKDIR.value, "early_exit.png"))
    plot(rows, png)
    print(f"plot: {png}")
    if _JSON.value:
        output = {name: {k: v for k, v in row.items() if k != "curve"}
                  for name, row in rows.items()}
        output["targets"] = targets
        with open(_JSON.value, "w") as f:
            json.dump(output, f, indent=2)
        print(f"json: {_JSON.value}")


if __name__ == "__main__":
    app.run(main)
