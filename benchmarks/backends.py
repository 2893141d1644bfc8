"""Training steps/s of AL and BP on TensorFlow (XLA) and on JAX (jit), each at its best.

    python benchmarks/backends.py [--models=mlp,cnn_light,resnet20_light,lstm]
        [--variants=tf_al,tf_bp,jax_al,jax_bp] [--rounds=3] [--steps=32]
        [--spe=1,8,32] [--batch_size=32] [--json=/tmp/backends.json]

Issue 24, point 6: is AL as fast on Keras' JAX backend as on TensorFlow,
and does it keep (or better) its standing against BP there?  Variants:

  tf_al    AL (`method="al"`), KERAS_BACKEND=tensorflow, compile(jit_compile=True) (XLA)
  tf_bp    its BP twin (`method="bp"`), the same
  jax_al   AL, KERAS_BACKEND=jax, compile(jit_compile=True) (jax.jit)
  jax_bp   the BP twin, the same

Models, with their configs' options: `mlp` (configs/fashion_mnist.py
`model=mlp`, 28x28x1, 10 classes), `cnn_light` (`model=cnn,light`),
`resnet20_light` (configs/cifar10.py `model=resnet20,light`, 32x32x3),
`lstm` (configs/wordnet.py `model=lstm`: embedding 128, bidirectional LSTM
of 128 a direction, 2 LSTM blocks, label width 128; built with
`models.get("lstm", input_shape=(32,), vocab_size=30000, num_classes=26)`
on random token ids, 8 to 32 tokens then padding 0, so no
TextVectorization is involved).  Batch `--batch_size` (32, the image
configs' own; 0: each config's, which is 128 for WordNet), Adam 1e-3,
random data in memory, `model.fit`.

Each variant runs in its own process (`benchmarks/variants.py`), with the
backend in its environment; the variants of a model alternate, round after
round (every other round in reverse order), and the median of the rounds
is reported.  `steps_per_execution` (Keras' batches per call of the
compiled step) is each variant's best: in round 1 a variant's process
times every candidate of `--spe` in turn (a fresh model for each), and the
fastest is the one timed in the later rounds (round 1's figure for it
counts as that round's).

Timing, the same on both backends: per `steps_per_execution` s, a warm-up
`fit` of max(10, s) steps rounded up to whole calls (tracing, XLA or jit
compilation; its seconds are reported as `first_fit_seconds`), then a
`fit` of ceil(--steps / s) + 1 calls.  A callback notes the end of every
call once its logs are numbers, i.e. once that call's steps have run (JAX
dispatches asynchronously: a call returns before its step has run); steps/s
is measured from the end of the first call to the end of the last, so the
steady state alone.  The callback is `async_safe`, so on JAX Keras runs it
in a worker thread and keeps dispatching steps meanwhile, as a `fit`
without callbacks does (a callback that is not would make every call wait
for its step before the next is dispatched); TensorFlow's loop runs it in
line, as always.

Printed: steps/s of every model and variant with the `steps_per_execution`
it was timed at, round 1's sweep over the candidates, and per model
`jax_al_over_tf_al` (target >= 1.0), `al_over_bp_tf` (tf_al / tf_bp) and
`al_over_bp_jax` (jax_al / jax_bp; target >= al_over_bp_tf).  `--json`
writes them (key: model; per variant `steps_per_second`,
`steps_per_execution`, `rounds`, `sweep`, `first_fit_seconds`, the load
average as each round's process started and `cores_used` (its CPU seconds
per second while timed: on a shared machine, how much CPU it got), or its
one-line `error`) with the date, host, CPU count, load average, the
command line and the versions each backend's child used.  A variant that
fails is recorded with its error and the run goes on.

The default command took 19 minutes on the project's 2-core CPU (round 1,
the sweep, 10 of them; 44 minutes while other jobs kept the cores busy);
`--rounds=1 --spe=8` takes about 5.  On a shared machine read `cores_used`:
a round whose process kept clearly fewer cores busy than the variant's
other rounds (marked `*`) was slowed by other work; the median of 3 rounds
outvotes one such round.
"""

import datetime
import json
import os
import socket
import sys
import time

from absl import app, flags

import variants as variants_lib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name -> (config file, config argument, input shape, classes)
MODELS = {
    "mlp": ("fashion_mnist", "model=mlp", (28, 28, 1), 10),
    "cnn_light": ("fashion_mnist", "model=cnn,light", (28, 28, 1), 10),
    "resnet20_light": ("cifar10", "model=resnet20,light", (32, 32, 3), 10),
    "lstm": ("wordnet", "model=lstm", None, 26),  # 26 noun supersenses.
}
# name -> (KERAS_BACKEND, method)
VARIANTS = {
    "tf_al": ("tensorflow", "al"),
    "tf_bp": ("tensorflow", "bp"),
    "jax_al": ("jax", "al"),
    "jax_bp": ("jax", "bp"),
}

_MODELS = flags.DEFINE_list("models", list(MODELS), "Models to time.")
_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), "Variants to time.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds over the variants (alternated).")
_STEPS = flags.DEFINE_integer(
    "steps", 32, "Timed steps per variant and steps_per_execution (rounded up to whole "
    "calls; the timed fit has one call more, before the clock starts).")
_SPE = flags.DEFINE_list(
    "spe", ["1", "8", "32"],
    "Candidate steps_per_execution; round 1 times each, later rounds the best.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size (0: each config's own).")
_TIMEOUT = flags.DEFINE_integer("timeout", 1200, "Seconds before a variant's process is "
                                "killed (recorded as its error).")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
_CHILD = flags.DEFINE_string("child", None, "(internal) model:variant to time here.")


# ---------------------------------------------------------------- the child


def _config(model_name, method):
    from al_keras.training import config_lib

    config_name, arg, _, _ = MODELS[model_name]
    return config_lib.load_config_module(
        os.path.join(ROOT, "configs", f"{config_name}.py")).get_config(f"{arg},method={method}")


def _data(model_name, config, examples, rng):
    """Random inputs and labels of `model_name`, `examples` of them, in memory."""
    _, _, shape, classes = MODELS[model_name]
    y = rng.integers(0, classes, examples).astype("int32")
    if shape is not None:
        return rng.random((examples,) + shape).astype("float32"), y
    import numpy as np

    length = config.sequence_length
    x = rng.integers(1, config.vocab_size, (examples, length)).astype("int32")
    tokens = rng.integers(8, length + 1, examples)  # Then padding, id 0.
    x[np.arange(length)[None, :] >= tokens[:, None]] = 0
    return x, y


def _build(model_name, method, config):
    from al_keras import models

    _, _, shape, classes = MODELS[model_name]
    options = {k: v for k, v in config.model_options.to_dict().items() if v is not None}
    if shape is None:  # The text model: token ids of the config's length and vocabulary.
        shape = (config.sequence_length,)
        options["vocab_size"] = config.vocab_size
    return models.get(config.model, input_shape=shape, num_classes=classes, method=method,
                      **options)


def _versions():
    import keras
    import numpy as np

    versions = {"keras": keras.__version__, "backend": keras.backend.backend(),
                "numpy": np.__version__, "python": sys.version.split()[0]}
    if keras.backend.backend() == "jax":
        import jax
        import jaxlib

        versions.update(jax=jax.__version__, jaxlib=jaxlib.__version__,
                        jax_devices=[str(d) for d in jax.devices()])
    else:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    return versions


def time_variant(model_name, variant, candidates, steps, batch_size):
    """Times one variant in this process at each `steps_per_execution` candidate."""
    import keras
    import numpy as np

    backend, method = VARIANTS[variant]
    if keras.backend.backend() != backend:
        raise RuntimeError(f"{variant} needs KERAS_BACKEND={backend}, this process runs "
                           f"{keras.backend.backend()}.")
    config = _config(model_name, method)
    batch = batch_size or config.batch_size
    result = {"steps_per_second": {}, "first_fit_seconds": {}, "timed_steps": {},
              "cores_used": {},
              "batch_size": batch, "versions": _versions(),
              "load_average": [round(v, 2) for v in os.getloadavg()]}
    for spe in candidates:
        keras.utils.set_random_seed(0)
        model = _build(model_name, method, config)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True,
                      steps_per_execution=spe)
        examples = batch * variants_lib.plan(spe, steps)[1]
        x, y = _data(model_name, config, examples, np.random.default_rng(0))
        timing = variants_lib.time_fit(model, x, y, batch, steps)
        for key, value in timing.items():
            result[key][str(spe)] = value
        del model
        keras.backend.clear_session()
    return result


# --------------------------------------------------------------- the parent


def contended(cores, below=0.75):
    """Per round, whether its process kept fewer than `below` x the most cores
    any round of the same variant kept busy: other work took the CPU then."""
    known = [c for c in cores if c]
    most = max(known) if known else None
    return [bool(c and most and c < below * most) for c in cores]


def best_spe(steps_per_second):
    """The fastest candidate of a `{spe: steps/s}` sweep (an int), or None."""
    timed = {int(spe): s for spe, s in steps_per_second.items() if s}
    return max(timed, key=timed.get) if timed else None


def over(a, b):
    return round(a / b, 3) if a and b else None


def ratios(steps_per_second):
    """The issue's ratios from `{variant: steps/s}` (None where one is missing)."""
    s = steps_per_second
    values = {
        "jax_al_over_tf_al": over(s.get("jax_al"), s.get("tf_al")),
        "al_over_bp_tf": over(s.get("tf_al"), s.get("tf_bp")),
        "al_over_bp_jax": over(s.get("jax_al"), s.get("jax_bp")),
    }
    targets = {
        "jax_al_over_tf_al >= 1.0": (None if values["jax_al_over_tf_al"] is None
                                     else values["jax_al_over_tf_al"] >= 1.0),
        "al_over_bp_jax >= al_over_bp_tf": (
            None if None in (values["al_over_bp_jax"], values["al_over_bp_tf"])
            else values["al_over_bp_jax"] >= values["al_over_bp_tf"]),
    }
    return {**values, "targets_met": targets}


def summarise(outcomes, model_names, variant_names, best):
    """The report: per model, every variant's figures and the ratios.

    `outcomes`: `variants.alternate`'s, keyed `(model, variant)`; `best`:
    `(model, variant)` -> the steps_per_execution timed after round 1.
    """
    report = {}
    for model_name in model_names:
        entry, medians = {}, {}
        for variant in variant_names:
            outcome = outcomes.get((model_name, variant))
            if outcome is None:
                continue
            results = outcome["results"]
            median = outcome["median"]
            medians[variant] = median
            entry[variant] = {
                "steps_per_second": median and round(median, 3),
                "steps_per_execution": best.get((model_name, variant)),
                "rounds": [v and round(v, 3) for v in outcome["values"]],
                "sweep": results[0]["steps_per_second"] if results else None,
                "first_fit_seconds": results[0]["first_fit_seconds"] if results else None,
                "sweep_cores_used": results[0].get("cores_used") if results else None,
                "batch_size": results[0]["batch_size"] if results else None,
                "load_averages": [r.get("load_average") for r in results],
                "cores_used": [(r.get("cores_used") or {}).get(str(best.get(
                    (model_name, variant)))) for r in results],
                "error": outcome["error"],
            }
        report[model_name] = {**entry, **ratios(medians)}
    return report


def tables(report, variant_names):
    """The printed tables of a report (Markdown)."""
    def cell(figures):
        if figures is None:
            return "-"
        if figures["steps_per_second"] is None:
            return "failed" if figures["error"] else "-"
        return f"{figures['steps_per_second']:.2f} (spe {figures['steps_per_execution']})"

    lines = ["| model | " + " | ".join(variant_names) + " |",
             "|" + "---|" * (len(variant_names) + 1)]
    for model_name, entry in report.items():
        lines.append(f"| {model_name} | "
                     + " | ".join(cell(entry.get(v)) for v in variant_names) + " |")
    keys = ("jax_al_over_tf_al", "al_over_bp_tf", "al_over_bp_jax")
    lines += ["", "| model | " + " | ".join(keys) + " | targets met |",
              "|" + "---|" * (len(keys) + 2)]
    for model_name, entry in report.items():
        met = ", ".join(f"{k}: {v}" for k, v in entry["targets_met"].items())
        lines.append(f"| {model_name} | " + " | ".join(
            "-" if entry[k] is None else f"{entry[k]:.3f}" for k in keys) + f" | {met} |")
    lines += ["", "round 1, steps/s at each steps_per_execution (the first fit's seconds, "
              "the cores used while timed):",
              "| model | variant | sweep |", "|---|---|---|"]
    measured = [(model_name, variant, entry[variant]) for model_name, entry in report.items()
                for variant in variant_names if entry.get(variant)]
    for model_name, variant, figures in measured:
        if figures["sweep"] is None:
            lines.append(f"| {model_name} | {variant} | {figures['error']} |")
            continue
        sweep = ", ".join(
            f"{spe}: {s:.2f} ({figures['first_fit_seconds'][spe]} s, "
            f"{(figures['sweep_cores_used'] or {}).get(spe)})" if s
            else f"{spe}: -" for spe, s in figures["sweep"].items())
        lines.append(f"| {model_name} | {variant} | {sweep} |")
    lines += ["", "every round at the best steps_per_execution: steps/s (cores used; * "
              "under 0.75x the variant's most: other work took CPU):",
              "| model | variant | rounds |", "|---|---|---|"]
    for model_name, variant, figures in measured:
        if figures["rounds"]:
            cores = figures.get("cores_used") or [None] * len(figures["rounds"])
            rounds = ", ".join(f"{v} ({c}{'*' if busy else ''})" for v, c, busy in zip(
                figures["rounds"], cores, contended(cores)))
            lines.append(f"| {model_name} | {variant} | {rounds} |")
    return "\n".join(lines)


def _facts(outcomes, load_at_start):
    versions = {}
    for (_, variant), outcome in outcomes.items():
        backend = VARIANTS[variant][0]
        if outcome["results"] and backend not in versions:
            versions[backend] = outcome["results"][0]["versions"]
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "load_average": {"start": load_at_start,
                         "end": [round(v, 2) for v in os.getloadavg()]},
        "command": " ".join(["python"] + sys.argv),
        "versions": versions,
    }


def main(argv):
    del argv
    candidates = [int(s) for s in _SPE.value]
    if _CHILD.value:
        model_name, variant = _CHILD.value.split(":")
        variants_lib.emit(time_variant(model_name, variant, candidates, _STEPS.value,
                                       _BATCH.value))
        return
    unknown = sorted(set(_MODELS.value) - set(MODELS)) + sorted(
        set(_VARIANTS.value) - set(VARIANTS))
    if unknown:
        raise app.UsageError(f"Unknown models or variants {unknown}; models "
                             f"{list(MODELS)}, variants {list(VARIANTS)}.")
    best = {}
    started = time.time()
    load_at_start = [round(v, 2) for v in os.getloadavg()]

    def run(key, round_index):
        model_name, variant = key
        spes = [best[key]] if key in best else candidates
        result = variants_lib.spawn(
            __file__, f"{model_name}:{variant}",
            args=[f"--spe={','.join(map(str, spes))}", f"--steps={_STEPS.value}",
                  f"--batch_size={_BATCH.value}"],
            env={"KERAS_BACKEND": VARIANTS[variant][0]}, timeout=_TIMEOUT.value)
        if key not in best:
            best[key] = best_spe(result["steps_per_second"])
        result["value"] = result["steps_per_second"].get(str(best[key]))
        sweep = ", ".join(f"spe {spe}: {s:.2f}" if s else f"spe {spe}: -"
                          for spe, s in result["steps_per_second"].items())
        print(f"round {round_index + 1} {model_name} {variant}: {sweep} steps/s "
              f"[{time.time() - started:.0f} s]", flush=True)
        return result

    def write(outcomes):
        if _JSON.value:
            report = summarise(outcomes, _MODELS.value, _VARIANTS.value, best)
            with open(_JSON.value, "w") as f:
                json.dump({**_facts(outcomes, load_at_start), "rounds": _ROUNDS.value,
                           "steps": _STEPS.value, "spe_candidates": candidates,
                           "models": report}, f, indent=2)

    keys = [(m, v) for m in _MODELS.value for v in _VARIANTS.value]
    outcomes = variants_lib.alternate(
        keys, run, _ROUNDS.value, value=lambda result: result["value"],
        log=lambda line: print(line, flush=True) if "FAILED" in line else None,
        after_round=lambda _, outcomes: write(outcomes))
    report = summarise(outcomes, _MODELS.value, _VARIANTS.value, best)
    batches = sorted({f["batch_size"] for entry in report.values() for f in entry.values()
                      if isinstance(f, dict) and f.get("batch_size")})
    print(f"\nsteps/s, median of {_ROUNDS.value} round(s), at each variant's best "
          f"steps_per_execution of {candidates}; batch {batches}, {os.cpu_count()} cores, "
          f"{time.time() - started:.0f} s in all")
    print(tables(report, _VARIANTS.value))
    for model_name, entry in report.items():
        for variant in _VARIANTS.value:
            if entry.get(variant, {}).get("error"):
                print(f"{model_name} {variant} failed: {entry[variant]['error']}")
    write(outcomes)


if __name__ == "__main__":
    app.run(main)
