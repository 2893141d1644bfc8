"""What the reliability features cost: op determinism and the data checks.

    python benchmarks/reliability_cost.py [--parts=determinism,checks] \
        [--models=mlp,cnn] [--steps=30] [--check_epochs=3]

1. TensorFlow op determinism (`--config.deterministic=true`,
   `tf.config.experimental.enable_op_determinism`): the AL model and its BP
   twin of the Fashion-MNIST configs (28x28x1, batch 32, Adam, XLA as
   train.py compiles them), step time without and with determinism.  Each
   setting runs in its own process (determinism cannot be turned off once
   on); ms/step is the median of 3 rounds of `--steps` on one batch held in
   memory (`step_timing.step_timer`).
2. The data checks of `fit` (`check_data`, on by default): one epoch of
   1,875 batches of 32 from a `tf.data` pipeline (random Fashion-MNIST-shaped
   images), `fit` with `check_data=True` against `False`, same process,
   alternated, median of 3 epochs after a warm-up epoch.  The model is the
   digits config's small AL MLP (256 hidden units, label width 128, ~5 ms a
   step), so that the checks' share is large: a worst case.

Prints each time and the ratio on/off.  Measured figures: docs/reliability.md,
"Reliability".
"""

import json
import statistics
import subprocess
import sys
import time

from absl import app, flags

_MODELS = flags.DEFINE_list("models", ["mlp", "cnn"], "Zoo models to time.")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per round.")
_PARTS = flags.DEFINE_list("parts", ["determinism", "checks"], "What to time.")
_CHILD = flags.DEFINE_enum("child", None, ["off", "on"],
                           "Internal: time steps in this process with determinism "
                           "off or on, print JSON.")
_CHECK_EPOCHS = flags.DEFINE_integer("check_epochs", 3,
                                     "Timed epochs per setting of check_data.")


def _model(name, method):
    import keras

    import al_keras
    from al_keras.training import config_lib

    config = config_lib.load_config_module("configs/fashion_mnist.py").get_config(
        f"model={name},method={method}")
    model = al_keras.models.get(name, input_shape=(28, 28, 1), num_classes=10,
                                method=method, **config.model_options.to_dict())
    model.compile(keras.optimizers.Adam(1e-4), metrics=["accuracy"], jit_compile=True)
    return model


def _time_steps(determinism):
    import numpy as np
    import tensorflow as tf

    import step_timing

    if determinism == "on":
        tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(0)
    x = rng.random((32, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 32).astype("int32")
    times = {}
    for name in _MODELS.value:
        for method in ("al", "bp"):
            run = step_timing.step_timer(_model(name, method), step_timing.one_batch(x, y))
            run(5)  # Traces, compiles, warms up.
            times[f"{name} {method}"] = statistics.median(
                run(_STEPS.value) for _ in range(3))
    print(json.dumps(times))


def _time_checks():
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((60_000, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 60_000).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).prefetch(tf.data.AUTOTUNE)
    import keras

    import al_keras

    model = al_keras.models.get("mlp", input_shape=(28, 28, 1), num_classes=10,
                                hidden_units=256, label_units=128)
    model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"], jit_compile=True)
    model.fit(data, epochs=1, verbose=0)  # Warm-up (traces both pipelines once).
    model.fit(data, epochs=1, verbose=0, check_data=False)
    seconds = {True: [], False: []}
    for _ in range(_CHECK_EPOCHS.value):
        for check in (True, False):
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0, check_data=check)
            seconds[check].append(time.perf_counter() - start)
    on, off = (statistics.median(seconds[c]) for c in (True, False))
    print(f"\nfit, one epoch of 1,875 batches (small AL MLP): check_data on {on:.2f} s, "
          f"off {off:.2f} s, on/off {on / off:.3f}")


def main(argv):
    del argv
    if _CHILD.value:
        _time_steps(_CHILD.value)
        return
    if "checks" in _PARTS.value:
        _time_checks()
    if "determinism" not in _PARTS.value:
        return
    results = {}
    for setting in ("off", "on"):
        proc = subprocess.run(
            [sys.executable, __file__, f"--child={setting}",
             f"--models={','.join(_MODELS.value)}", f"--steps={_STEPS.value}"],
            capture_output=True, text=True, check=True)
        results[setting] = json.loads(proc.stdout.strip().splitlines()[-1])
    print("| model | ms/step, determinism off | on | on/off |")
    print("|---|---|---|---|")
    for key, off in results["off"].items():
        on = results["on"][key]
        print(f"| {key} | {off * 1e3:.1f} | {on * 1e3:.1f} | {on / off:.2f} |")


if __name__ == "__main__":
    app.run(main)
