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
  jax_bp_best   the BP twin on Keras' JAX backend, jitted, every core
  jax_al_best   AL on JAX, jitted, every core
  jax_blocks    AL on JAX under BlockParallel, one host CPU device per core
                (XLA_FLAGS=--xla_force_host_platform_device_count), pipelined
                by asynchronous dispatch, each block's step jitted for its device

A process warms up (a fit of at least 10 steps: compilation, Ray's actors),
then fits one epoch of `--steps` steps (`variants.time_fit`); its throughput
is the steady state, steps per second from the end of that fit's first call
of the train step to the end of its last (on JAX the clock waits for the
step: its dispatch is asynchronous).  The pipelines' once-per-epoch drain
(after the last batch) and weight transfer are left out: at 1,875 steps per
Fashion-MNIST epoch they cost well under 1%.

Printed per model, and written with `--json` (key: model): steps/s of every
variant, and `ray_over_bp_best` (the faster of ray_2 and ray_2_plain over the faster BP
variant), `ray_over_al_best` (over the faster of al_best and al_plain),
`ray4_over_al_best`, `blocks_over_al_best`, `blocks_plain_over_al_best`,
`ray_over_limit`, `jax_blocks_over_jax_al` and `jax_al_over_jax_bp`, where the
limit is `cores x al_one_core`: what perfect pipelining of AL's XLA step over
the cores would reach.
"""

import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import variants as variants_lib  # noqa: E402

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
            "ray_2", "ray_2_plain", "ray_4", "jax_bp_best", "jax_al_best", "jax_blocks")

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
    if variant == "jax_blocks":
        return distribute.make_strategy("blocks", cores)
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
    method = "bp" if "bp_" in variant else "al"
    config = config_lib.load_config_module(
        os.path.join(ROOT, "configs", f"{config_name}.py")).get_config(f"{arg},method={method}")
    shape = (28, 28, 1) if config_name == "fashion_mnist" else (32, 32, 3)
    options = {k: v for k, v in config.model_options.to_dict().items() if v is not None}
    options.update(overrides)
    with distribute.strategy_scope(strategy):
        model = models.get(config.model, input_shape=shape, num_classes=10, method=method,
                           **options)
        jit = not variant.endswith("_plain") and variant != "bp_mirrored"
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit,
                      steps_per_execution=steps_per_execution)
    rng = np.random.default_rng(0)
    x = rng.random((32 * variants_lib.plan(steps_per_execution, steps)[1],)
                   + shape).astype("float32")
    y = rng.integers(0, 10, len(x)).astype("int32")

    result = variants_lib.time_fit(model, x, y, 32, steps)
    result["backend"] = keras.backend.backend()
    if variant.startswith("ray"):
        result.update(stages=strategy.stage_blocks, busy=strategy.stage_busy,
                      predicted_speedup=strategy.predicted_speedup)
        strategy.shutdown()
    if variant == "jax_blocks":
        result.update(placement=strategy.placement,
                      predicted_speedup=strategy.predicted_speedup,
                      describe=strategy.describe())
    return result


def child_env(variant):
    """The environment of a variant's process: Keras' JAX backend for the
    `jax_` variants (one host CPU device per core for `jax_blocks`)."""
    if not variant.startswith("jax_"):
        return {"KERAS_BACKEND": "tensorflow"}
    env = {"KERAS_BACKEND": "jax"}
    if variant == "jax_blocks":
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                            f"_device_count={os.cpu_count() or 1}").strip()
    return env


def _spawn(model_name, variant, steps, steps_per_execution):
    return variants_lib.spawn(
        __file__, f"{model_name}:{variant}", env=child_env(variant),
        args=(f"--steps={steps}", f"--steps_per_execution={steps_per_execution}"))


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
        "jax_blocks_over_jax_al": over(medians.get("jax_blocks"), medians.get("jax_al_best")),
        "jax_al_over_jax_bp": over(medians.get("jax_al_best"), medians.get("jax_bp_best")),
    }


def main(argv):
    del argv
    if _CHILD.value:
        model_name, variant = _CHILD.value.split(":")
        print("RESULT " + json.dumps(time_variant(model_name, variant, _STEPS.value,
                                                  _STEPS_PER_EXECUTION.value)))
        return
    pairs = [(m, v) for m in _MODELS.value for v in _VARIANTS.value
             if not (v == "ray_4" and m.startswith("mlp"))]  # 2 blocks: 2 stages.
    outcomes = variants_lib.alternate(
        pairs, lambda pair, round_: _spawn(*pair, _STEPS.value, _STEPS_PER_EXECUTION.value),
        _ROUNDS.value, log=lambda line: print(line, flush=True))
    details = {pair: o["results"][-1] for pair, o in outcomes.items() if o["results"]}
    report = {}
    header = "| model | " + " | ".join(_VARIANTS.value) + " |"
    rows = [header, "|" + "---|" * (len(_VARIANTS.value) + 1)]
    for model_name in _MODELS.value:
        medians = {v: outcomes[model_name, v]["median"] if (model_name, v) in outcomes
                   else None for v in _VARIANTS.value}
        report[model_name] = {"steps_per_second": {v: s and round(s, 2)
                                                   for v, s in medians.items()},
                              **ratios(medians),
                              "ray_2": details.get((model_name, "ray_2")),
                              "ray_4": details.get((model_name, "ray_4")),
                              "jax_blocks": details.get((model_name, "jax_blocks")),
                              "errors": {v: outcomes[model_name, v]["error"]
                                         for v in _VARIANTS.value
                                         if outcomes.get((model_name, v), {}).get("error")}}
        rows.append(f"| {model_name} | " + " | ".join(
            f"{medians[v]:.2f}" if medians[v] else "-" for v in _VARIANTS.value) + " |")
    print("\nsteps/s, median of", _ROUNDS.value, "rounds, batch 32,", os.cpu_count(), "cores,",
          _STEPS_PER_EXECUTION.value, "batches per call")
    print("\n".join(rows))
    keys = ("ray_over_bp_best", "ray_over_al_best", "ray4_over_al_best",
            "blocks_over_al_best", "blocks_plain_over_al_best", "ray_over_limit",
            "jax_blocks_over_jax_al", "jax_al_over_jax_bp")
    print("\n| model | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for model_name, values in report.items():
        print(f"| {model_name} | " + " | ".join(str(values[k]) for k in keys) + " |")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    app.run(main)
