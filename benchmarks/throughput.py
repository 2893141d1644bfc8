"""Training throughput of AL against BP, each at its best, on this machine.

    python benchmarks/throughput.py [--models=mlp,mlp_light,cnn,cnn_light,resnet20_light]
        [--rounds=3] [--steps=80] [--steps_per_execution=1] [--json=/tmp/throughput.json]

Models, with their configs' options: `mlp`, `cnn`, `cnn_light`
(configs/fashion_mnist.py, 28x28x1), `mlp_light` (the light MLP with
`label_units=256`), `resnet20_light` (configs/cifar10.py, 32x32x3).  Batch
32, Adam, random data in memory, `model.fit`, every variant compiled with
the same `--steps_per_execution` (Keras' batches per call of the train
step; under RayPipeline, batches per Ray call of each stage).  Variants, each in its own
process, alternated over `--rounds` rounds (the median is reported):

  bp_best       the BP twin, XLA, TensorFlow's threads over every core
  bp_mirrored   the BP twin under MirroredStrategy over one CPU device per core
  al_best       AL in one process, XLA, every core
  al_plain      AL in one process without XLA, every core (faster for some
                convolutional models on this CPU)
  al_one_core   AL in one process pinned to one core (sched_setaffinity), XLA
  al_blocks     AL under BlockParallel, one CPU device per core, pipelined,
                each block's step XLA-compiled for its device
  al_blocks_plain  the same without XLA
  ray_2         AL under RayPipeline, 2 stages, XLA per stage
  ray_2_plain   the same without XLA
  ray_4         AL under RayPipeline, 4 stages on the same cores (4-block models)

A process warms up (one epoch of 10 steps: compilation, Ray's actors), then
fits one epoch of `--steps` steps; its throughput is the steady state, steps
per second between the first batch end Keras reports after step 10 and the
last one before the epoch's last call (the once-per-epoch fill, drain and
weight transfer of the pipelines are left out: at 1,875 steps per
Fashion-MNIST epoch they cost well under 1%).

Printed per model, and written with `--json` (key: model): steps/s of every
variant, and `ray_over_bp_best` (the faster of ray_2 and ray_2_plain over the faster BP
variant), `ray_over_al_best` (over the faster of al_best and al_plain),
`ray4_over_al_best`, `blocks_over_al_best`, `blocks_plain_over_al_best` and
`ray_over_limit`, where the
limit is `cores x al_one_core`: what perfect pipelining of AL's XLA step over
the cores would reach.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = {  # name -> (config file, config argument, option overrides)
    "mlp": ("fashion_mnist", "model=mlp", {}),
    "mlp_light": ("fashion_mnist", "model=mlp,light", {"label_units": 256}),
    "cnn": ("fashion_mnist", "model=cnn", {}),
    "cnn_light": ("fashion_mnist", "model=cnn,light", {}),
    "resnet20_light": ("cifar10", "model=resnet20,light", {}),
}
VARIANTS = ("bp_best", "bp_mirrored", "al_best", "al_plain", "al_one_core", "al_blocks",
            "al_blocks_plain",
            "ray_2", "ray_2_plain", "ray_4")
WARMUP_STEPS, SKIPPED_STEPS = 10, 10

_MODELS = flags.DEFINE_list("models", list(MODELS), "Models to time.")
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), "Variants to time.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds over the variants (alternated).")
_STEPS = flags.DEFINE_integer("steps", 80, "Steps of the timed epoch.")
_STEPS_PER_EXECUTION = flags.DEFINE_integer(
    "steps_per_execution", 1, "Batches per call of the train step, every variant.")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
_CHILD = flags.DEFINE_string("child", None, "(internal) model:variant to time here.")


def _strategy(variant):
    """The variant's strategy; made before TensorFlow runs an op."""
    from al_keras import distribute

    cores = os.cpu_count() or 1
    if variant == "al_one_core":
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        return None
    if variant == "bp_mirrored":
        return distribute.make_strategy("mirrored")
    if variant.startswith("al_blocks"):
        return distribute.make_strategy("blocks", cores,
                                        jit_compile=not variant.endswith("_plain"))
    if variant.startswith("ray_"):
        return distribute.RayPipeline(num_stages=int(variant.split("_")[1]),
                                      jit_compile=not variant.endswith("_plain"))
    return None


def time_variant(model_name, variant, steps, steps_per_execution=1):
    """Times one variant in this process; returns steps/s and details."""
    strategy = _strategy(variant)
    import keras
    import numpy as np

    from al_keras import distribute, models
    from al_keras.training import config_lib

    config_name, arg, overrides = MODELS[model_name]
    method = "bp" if variant.startswith("bp") else "al"
    config = config_lib.load_config_module(
        os.path.join(ROOT, "configs", f"{config_name}.py")).get_config(f"{arg},method={method}")
    shape = (28, 28, 1) if config_name == "fashion_mnist" else (32, 32, 3)
    options = {k: v for k, v in config.model_options.to_dict().items() if v is not None}
    options.update(overrides)
    with distribute.strategy_scope(strategy):
        model = models.get(config.model, input_shape=shape, num_classes=10, method=method,
                           **options)
        jit = variant in ("bp_best", "al_best", "al_one_core", "al_blocks")
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit,
                      steps_per_execution=steps_per_execution)
    rng = np.random.default_rng(0)
    x = rng.random((32 * steps,) + shape).astype("float32")
    y = rng.integers(0, 10, len(x)).astype("int32")

    ends = []  # (the call's last step, when it ended)

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append((batch + 1, time.perf_counter()))

    model.fit(x[:32 * WARMUP_STEPS], y[:32 * WARMUP_STEPS], batch_size=32, epochs=1,
              verbose=0, shuffle=False)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[Clock()])
    timed = [end for end in ends[:-1] if end[0] >= SKIPPED_STEPS]
    (first_step, first), (last_step, last) = timed[0], timed[-1]
    result = {"steps_per_second": (last_step - first_step) / (last - first)}
    if variant.startswith("ray"):
        result.update(stages=strategy.stage_blocks, busy=strategy.stage_busy,
                      predicted_speedup=strategy.predicted_speedup)
        strategy.shutdown()
    return result


def _spawn(model_name, variant, steps, steps_per_execution):
    proc = subprocess.run(
        [sys.executable, __file__, f"--child={model_name}:{variant}", f"--steps={steps}",
         f"--steps_per_execution={steps_per_execution}"],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{model_name}:{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def ratios(medians):
    """The ratios of the issue's targets from the variants' median steps/s."""
    cores = os.cpu_count() or 1
    def best(*names):
        values = [medians[n] for n in names if medians.get(n)]
        return max(values) if values else None

    def over(a, b):
        return round(a / b, 3) if a and b else None

    bp, al, ray = best("bp_best", "bp_mirrored"), best("al_best", "al_plain"), best(
        "ray_2", "ray_2_plain")
    one_core = medians.get("al_one_core")
    return {
        "ray_over_bp_best": over(ray, bp),
        "ray_over_al_best": over(ray, al),
        "ray4_over_al_best": over(medians.get("ray_4"), al),
        "blocks_over_al_best": over(medians.get("al_blocks"), al),
        "blocks_plain_over_al_best": over(medians.get("al_blocks_plain"), al),
        "ray_over_limit": over(ray, cores * one_core if one_core else None),
    }


def main(argv):
    del argv
    if _CHILD.value:
        model_name, variant = _CHILD.value.split(":")
        print("RESULT " + json.dumps(time_variant(model_name, variant, _STEPS.value,
                                                  _STEPS_PER_EXECUTION.value)))
        return
    runs = {(m, v): [] for m in _MODELS.value for v in _VARIANTS.value}
    details = {}
    for round_ in range(_ROUNDS.value):
        for model_name in _MODELS.value:
            for variant in _VARIANTS.value:
                if variant == "ray_4" and model_name.startswith("mlp"):
                    continue  # 2 blocks: at most 2 stages.
                result = _spawn(model_name, variant, _STEPS.value,
                                _STEPS_PER_EXECUTION.value)
                runs[model_name, variant].append(result["steps_per_second"])
                details[model_name, variant] = result
                print(f"round {round_ + 1} {model_name} {variant}: "
                      f"{result['steps_per_second']:.2f} steps/s", flush=True)
    report = {}
    header = "| model | " + " | ".join(_VARIANTS.value) + " |"
    rows = [header, "|" + "---|" * (len(_VARIANTS.value) + 1)]
    for model_name in _MODELS.value:
        medians = {v: statistics.median(runs[model_name, v]) if runs[model_name, v] else None
                   for v in _VARIANTS.value}
        report[model_name] = {"steps_per_second": {v: s and round(s, 2)
                                                   for v, s in medians.items()},
                              **ratios(medians),
                              "ray_2": details.get((model_name, "ray_2")),
                              "ray_4": details.get((model_name, "ray_4"))}
        rows.append(f"| {model_name} | " + " | ".join(
            f"{medians[v]:.2f}" if medians[v] else "-" for v in _VARIANTS.value) + " |")
    print("\nsteps/s, median of", _ROUNDS.value, "rounds, batch 32,", os.cpu_count(), "cores,",
          _STEPS_PER_EXECUTION.value, "batches per call")
    print("\n".join(rows))
    keys = ("ray_over_bp_best", "ray_over_al_best", "ray4_over_al_best",
            "blocks_over_al_best", "blocks_plain_over_al_best", "ray_over_limit")
    print("\n| model | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for model_name, values in report.items():
        print(f"| {model_name} | " + " | ".join(str(values[k]) for k in keys) + " |")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    app.run(main)
