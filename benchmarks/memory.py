"""Peak memory of training, AL against its BP twin, each in its own process.

    python benchmarks/memory.py --json=/tmp/memory.json

The model: the zoo CNN made deep, one block of two 3x3 convolutions per
entry of `--filters` (default 8 blocks: 32, 32, 64, 64, 128, 128, 256,
256, the zoo CNN's widths continued; stride 2 at the end of every second
block, as the zoo CNN), the configs' light bridges
(`config_lib.LIGHT_BRIDGE`), on random CIFAR-shaped data (32x32x3, 10 classes) at batch
`--batch_size` (1024), Adam, `jit_compile` as `--jit_compile`.  Each method runs
in a fresh process (`--method` is the child's flag): it builds the model,
compiles it and takes one warm-up step (tracing, XLA compilation), then
resets the counters and takes `--steps` steps.  Measured over those steps:

* `rss_peak_mb`: the process's resident-set high-water mark (`VmHWM`,
  reset through /proc/self/clear_refs before the steps);
* `rss_before_mb`: the resident set before the steps (weights, optimizer
  state, the TF runtime, the compiled step);
* `training_mb` = peak - before: what the steps themselves take on top,
  activations and gradients held for the backward passes;
* `allocator_peak_mb`: TF's allocator peak on CPU:0
  (`tf.config.experimental.get_memory_info`, reset before the steps).

Printed as a table with the ratios AL/BP; `--json PATH` writes them:
`al_over_bp_peak`, the ratio of the TF allocator peaks (every tensor and
variable of training, nothing of the runtime), `al_over_bp_rss_training`
that of `training_mb` and `al_over_bp_rss_peak` that of the whole
process's high-water mark (the TF runtime's ~0.7 GB included).

AL's step trains block after block and starts block i+1 only once block
i's gradients exist, so its peak is about its largest block's working set
plus every block's weights and Adam moments; BP's holds every block's
activations for the backward pass.  `--filters=32` measures block 1 of
the default model alone (then AL and BP are the same network).
"""

import json
import os
import subprocess
import sys

from absl import app, flags

_METHOD = flags.DEFINE_enum("method", None, ["al", "bp"],
                            "Run one method in this process (the child).")
_FILTERS = flags.DEFINE_list(
    "filters", ["32", "32", "64", "64", "128", "128", "256", "256"],
    "Convolution width of each block: the zoo CNN's (32, 32, 64, 64), its "
    "pattern (width doubled where the map halves) continued to 8 blocks.")
_BATCH = flags.DEFINE_integer("batch_size", 1024, "Training batch size.")
_STEPS = flags.DEFINE_integer("steps", 3, "Measured steps.")
_JIT = flags.DEFINE_bool("jit_compile", False, "Compile the step with XLA.")
_JSON = flags.DEFINE_string("json", None, "Write the results to this file.")

_MB = 2 ** 20


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"No {field} in /proc/self/status.")


def _reset_high_water_mark():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_one(method):
    """Measures `method` in this process; returns its figures."""
    import keras
    import numpy as np
    import tensorflow as tf

    import al_keras
    from al_keras.training import config_lib

    filters = tuple(int(f) for f in _FILTERS.value)
    options = dict(config_lib.LIGHT_BRIDGE, filters=filters)
    model = al_keras.models.get("cnn", method=method, input_shape=(32, 32, 3),
                                num_classes=10, **options)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  jit_compile=_JIT.value)
    rng = np.random.default_rng(0)
    x = rng.random((_BATCH.value, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, _BATCH.value).astype("int32")
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).cache().repeat())
    model.make_train_function()
    train = model.train_function
    next(iterator)

    _reset_high_water_mark()
    before = _status_kb("VmRSS")
    float(train(iterator)["loss"])  # Traces and compiles.
    tf.config.experimental.reset_memory_stats("CPU:0")
    for _ in range(_STEPS.value):
        logs = train(iterator)
    loss = float(logs["loss"])
    peak = _status_kb("VmHWM")
    allocator = tf.config.experimental.get_memory_info("CPU:0")
    return {
        "method": method, "loss": loss, "params": model.count_params(),
        "rss_before_mb": round(before / 1024, 1),
        "rss_peak_mb": round(peak / 1024, 1),
        "training_mb": round((peak - before) / 1024, 1),
        "allocator_peak_mb": round(allocator["peak"] / _MB, 1),
        "allocator_held_mb": round(allocator["current"] / _MB, 1),
    }


def main(argv):
    del argv
    if _METHOD.value:
        print("RESULT " + json.dumps(run_one(_METHOD.value)), flush=True)
        return
    results = {}
    for method in ("al", "bp"):
        args = [sys.executable, os.path.abspath(__file__), f"--method={method}",
                f"--filters={','.join(_FILTERS.value)}",
                f"--batch_size={_BATCH.value}", f"--steps={_STEPS.value}",
                f"--jit_compile={_JIT.value}"]
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            raise RuntimeError(f"The {method} process failed:\n{done.stderr[-3000:]}")
        results[method] = json.loads(lines[-1][len("RESULT "):])
    al, bp = results["al"], results["bp"]
    ratios = {
        "al_over_bp_peak": round(
            al["allocator_peak_mb"] / bp["allocator_peak_mb"], 3),
        "al_over_bp_rss_training": round(al["training_mb"] / bp["training_mb"], 3),
        "al_over_bp_rss_peak": round(al["rss_peak_mb"] / bp["rss_peak_mb"], 3),
    }
    print(f"CNN of {len(_FILTERS.value)} blocks, filters {','.join(_FILTERS.value)}, light "
          f"bridges, batch {_BATCH.value}, 32x32x3, jit_compile={_JIT.value}")
    print("| method | params | RSS before steps MB | RSS peak MB | training MB "
          "(peak - before) | TF allocator peak MB |")
    print("|---|---|---|---|---|---|")
    for r in (al, bp):
        print(f"| {r['method'].upper()} | {r['params']:,} | {r['rss_before_mb']} | "
              f"{r['rss_peak_mb']} | {r['training_mb']} | {r['allocator_peak_mb']} |")
    print(f"| AL/BP | | | {ratios['al_over_bp_rss_peak']:.2f} | "
          f"{ratios['al_over_bp_rss_training']:.2f} | "
          f"{ratios['al_over_bp_peak']:.2f} |")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"filters": [int(f) for f in _FILTERS.value],
                       "batch_size": _BATCH.value, "jit_compile": _JIT.value,
                       **ratios, "al": al, "bp": bp}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
