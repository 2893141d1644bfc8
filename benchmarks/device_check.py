"""Every GPU and many-core claim of al_keras on JAX, in one run of at most 8 minutes.

    KERAS_BACKEND=jax python benchmarks/device_check.py --out=/tmp/device_check \
        --data_dir=.data/fashion-mnist [--budget_seconds=420] [--parts=a,b,c,d,e]
    KERAS_BACKEND=jax python benchmarks/device_check.py --out=/tmp/smoke --smoke  # any CPU, ~1 min

`bash benchmarks/device_check.sh` runs it on the lent machine as it is: one NVIDIA H200, 16
CPU cores, Python 3.12 with JAX and CUDA, Keras from carried wheels; no TensorFlow, Ray,
ml_collections or network.  Its child processes refuse to import TensorFlow and
ml_collections, so that a run here fails where it would fail there.  It writes
OUT/device_check.json ("machine", "parts" a-e, "targets", "skipped", "smoke") and
OUT/device_check.md (a table per part, then the targets), rewritten after every variant:

a. GPU throughput: training examples/s of AL and its BP twin, ResNet-20 light and VGG light
   (configs/cifar10.py's options, light bridges) on SYNTHETIC CIFAR-shaped data (random
   32x32x3 images: these parts time steps, they do not measure accuracy) and the light CNN
   (28x28x1), float32 (JAX's default precision: TF32 on tensor cores) and `mixed_bfloat16`,
   batch 128 and 1024, jit, `steps_per_execution` 16 for both methods (on JAX Keras' trainer
   and AL's loop over the jitted step in Python, so a larger value only saves per-call
   callback and log work and never adds any: backends.py measured under 5% between 1 and
   32 on a CPU).  Four distinct batches wait on the device: the step alone, no input
   pipeline.  A warm-up fit of 3 calls (compiling), then a fit sized to `--seconds`,
   timed from the end of its first call to the end of its last.  Target: AL/BP >= 1.0 for
   ResNet-20 light, batch 128, bf16.
b. GPU memory (VGG light, float32): `peak_bytes_in_use` of a fresh process after an AL and a
   BP training step at batch 1024 (it includes what XLA's autotuning took while compiling,
   for both alike), then, in the same process, the largest batch that trains: a step at 4x
   the batch gives bytes per example, the line predicts the limit, probes around it
   (RESOURCE_EXHAUSTED = does not fit) until `--search_seconds`.  Targets: AL peak <= 0.6x
   BP's; AL fits a larger batch.  On a CPU `memory_stats()` is None: "not available on cpu".
c. Learning: the Fashion-MNIST light CNN from the idx files of `--data_dir` (skipped, said so,
   without them), Adam 1e-3, batch 32, 3 epochs, AL and BP: test accuracy and seconds.
   Target: AL within 1 point of BP.
d. Pipelining on the CPU cores (JAX_PLATFORMS=cpu, XLA_FLAGS=--xla_force_host_platform_
   device_count=K): AL under `BlockParallel(jax.devices("cpu")[:K], placement="auto",
   pipeline=True)` for K = 2, 4, 8 (K above the blocks skipped), AL on one device (all
   cores, no strategy) and BP on one device (all cores, its best), steps/s at batch 128, for
   an 8-block MLP (1024 units, light bridges) and ResNet-20 light.  Target: AL on 8 devices
   >= 1.5x BP for the 8-block model.
e. Predicted against measured for (d): `strategy.predicted_speedup` (measured overlap) and
   `pipeline_simulator.simulate(strategy.block_profile, K)`'s al_pipelined speedup, each
   times AL's one-device steps/s.  Target: measured >= 0.8 of the overlap's prediction on 8
   devices (8-block model).
f. At the top: nvidia-smi, CPU count, Python/JAX/jaxlib/Keras/NumPy versions, jax.devices().

Every variant runs in its own process (`variants.spawn`, KERAS_BACKEND=jax), AL and BP
alternating, one round, in an order that measures the targets first: a's ResNet-20 light
bf16, c, d's 8-block model on one device and on 8, b; then the rest of a and d.  No variant
starts that would end after `--budget_seconds` (by the longest of its kind so far, or a
guess, `GUESS`), and one still running then is killed; what did not run is in "skipped" with
the reason (`--parts=a` or `--parts=d` measures the rest in a second run), a failed
variant's one-line error is in its row, and the exit status is 0 unless the script itself
fails.  Not yet run on a GPU: how much beyond the targets fits there is to be seen.

`--smoke` checks the script on any CPU: tiny models (a 4-filter CNN stands in for VGG and
ResNet-20), batch 16 (32 in b, 512 images in c), bf16 only in a, part d on 2 devices, parts
a-c in one process (on the CPU, labelled so) and d in another: 50 s on 2 idle cores, 90 s
on busy ones.
"""

import datetime
import json
import math
import os
import subprocess
import sys
import time

from absl import app, flags

import variants as variants_lib

_OUT = flags.DEFINE_string("out", None, "Folder for device_check.json and device_check.md.")
_DATA = flags.DEFINE_string("data_dir", ".data/fashion-mnist",
                            "Fashion-MNIST idx files (part c; skipped without them).")
_SMOKE = flags.DEFINE_bool("smoke", False, "Check the script on a CPU in about a minute.")
_BUDGET = flags.DEFINE_float("budget_seconds", 420, "Start no variant that would end after this.")
_PARTS = flags.DEFINE_list("parts", list("abcde"), "Parts to run (e needs d's variants).")
_SECONDS = flags.DEFINE_float("seconds", 1.5, "Timed seconds per throughput measurement.")
_SEARCH = flags.DEFINE_float("search_seconds", 40,
                             "Part b: seconds of the batch search, per method.")
_SPEC = flags.DEFINE_string("spec", None, "(internal) the child's variants, JSON.")
_CHILD = flags.DEFINE_string("child", None, "(internal) the child's name.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC = ("SYNTHETIC CIFAR-shaped data (random 32x32x3 images; the light CNN: random "
             "28x28x1): throughput only, no accuracy")
CIFAR, FASHION = (32, 32, 3), (28, 28, 1)
LIGHT = {"bridge_multiplier": 1, "bridge_pool_size": 4}  # config_lib.LIGHT_BRIDGE
# name -> (backbone, input shape, options of both methods, of AL, of BP, Adam's lr): the
# configs' values (configs/cifar10.py, configs/fashion_mnist.py), without ml_collections.
MODELS = {
    "resnet20_light": ("resnet20", CIFAR, {"kernel_regularizer": 1e-4, **LIGHT}, {}, {}, 1e-3),
    "vgg_light": ("vgg", CIFAR, LIGHT, {"kernel_regularizer": 1e-5},
                  {"kernel_regularizer": 5e-4}, 1e-4),
    "cnn_light": ("cnn", FASHION, LIGHT, {}, {}, 1e-3),
    "mlp8_light": ("mlp", FASHION, {"num_blocks": 8, **LIGHT}, {}, {}, 1e-3),
}
TINY = {"cnn": {"filters": (4, 4, 8, 8), "label_units": 16},
        "mlp": {"hidden_units": 32, "label_units": 16}}
FULL = dict(models_a=("resnet20_light", "cnn_light", "vgg_light"), batches=(128, 1024),
            policies=("mixed_bfloat16", "float32"), spe=16, memory_model="vgg_light",
            memory_batch=1024, learn_epochs=3, learn_examples=(None, None),
            pipe_models=("mlp8_light", "resnet20_light"), pipe_batch=128, devices=(8, 2, 4))
SMOKE = dict(models_a=("cnn_light",), batches=(16,), policies=("mixed_bfloat16",), spe=4,
             memory_model="cnn_light", memory_batch=32, learn_epochs=3,
             learn_examples=(512, 256), pipe_models=("mlp8_light",), pipe_batch=16, devices=(2,))
# Seconds a variant of a part is guessed to take before one of its kind has run (part b: and
# its search; part d: twice for a pipelined one, which measures its blocks first).
GUESS = {"a": 45, "b": 20, "c": 45, "d": 30, "facts": 20}


def stand_in(name, smoke):
    """The model run for `name`: itself, or in a smoke run a tiny CNN for VGG and ResNet."""
    return name if not smoke or MODELS[name][0] in TINY else "cnn_light"


# ------------------------------------------------------------------ the child
def build(name, method, smoke):
    """A zoo model with its config's options (tiny in a smoke run), and Adam's lr."""
    from al_keras import models

    backbone, shape, options, al, bp, lr = MODELS[name]
    options = {**options, **(al if method == "al" else bp)}
    if smoke:
        options.update(TINY[backbone])
    model = models.get(backbone, input_shape=shape, num_classes=10, method=method, **options)
    return model, shape, lr


def device_batches(shape, batch, count=4):
    """A generator cycling `count` random batches held on the default device."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    pool = [(jnp.asarray(rng.standard_normal((batch,) + shape, dtype="float32")),
             jnp.asarray(rng.integers(0, 10, batch).astype("int32"))) for _ in range(count)]

    def forever():
        while True:
            yield from pool
    return forever()


def time_fit(model, data, spe, seconds):
    """Steps/s of `model.fit` in the steady state (see the docstring, part a)."""
    import keras
    import numpy as np

    ends = []  # (steps done, wall time, process CPU time) when a call's steps had run.

    class Clock(keras.callbacks.Callback):
        async_safe = True  # On JAX Keras keeps dispatching steps while this waits.

        def on_train_batch_end(self, batch, logs=None):
            for value in (logs or {}).values():
                np.asarray(value)  # Returns once this call's steps have run.
            ends.append((batch + 1, time.perf_counter(), time.process_time()))

    def fit(steps):
        ends.clear()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False,
                  callbacks=[Clock()])
        ends.sort()  # (Worker threads may append out of order.)
        return variants_lib.rate(ends), variants_lib.cores_used(ends)

    start = time.perf_counter()
    rate, _ = fit(3 * spe)
    first = time.perf_counter() - start
    calls = min(500, max(2, math.ceil(seconds * (rate or 1) / spe)))
    rate, cores = fit((calls + 1) * spe)
    return {"steps_per_second": rate, "first_fit_seconds": round(first, 2),
            "timed_steps": calls * spe, "cores_used": cores and round(cores, 2)}


def run_throughput(spec, smoke):
    """Parts a and d: one model, method and policy at each batch size (a fresh model each)."""
    import jax
    import keras

    from al_keras import distribute

    row, devices = {"by_batch": {}}, spec.get("devices", 0)
    for batch in spec["batches"]:
        keras.utils.set_random_seed(0)
        strategy = None
        if devices:  # Its block costs measured at this batch, as the simulator needs.
            strategy = distribute.BlockParallel(
                devices=jax.devices("cpu")[:devices], placement="auto", pipeline=True,
                profile_batch_size=batch)
        with distribute.strategy_scope(strategy):
            model, shape, lr = build(spec["model"], spec["method"], smoke)
            model.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=True,
                          steps_per_execution=spec["spe"])
        timing = time_fit(model, device_batches(shape, batch), spec["spe"], spec["seconds"])
        if timing["steps_per_second"]:
            timing["examples_per_second"] = timing["steps_per_second"] * batch
        if strategy is not None:
            timing.update(pipeline_facts(strategy, devices))
        row["by_batch"][str(batch)] = timing
        del model
        keras.backend.clear_session()
    return row


def pipeline_facts(strategy, devices):
    """What BlockParallel says of its placement, and the simulator's al_pipelined speedup."""
    import dataclasses

    from al_keras.distribute import pipeline_simulator

    facts = {name: getattr(strategy, name, None) for name in (
        "placement", "block_costs", "predicted_speedup", "measured_overlap", "ideal_speedup")}
    facts["placement"] = [str(d) for d in facts["placement"] or []]
    facts["describe"] = strategy.describe()
    profile = getattr(strategy, "block_profile", None)
    if profile:
        facts["block_profile"] = [dataclasses.asdict(c) for c in profile]
        al = pipeline_simulator.simulate(profile, devices)["al_pipelined"]
        facts.update(simulated_speedup=al.speedup_vs_al1,
                     simulated_steps_per_second=al.throughput)
    return facts


def run_memory(spec, smoke):
    """Part b: the peak of one step at the batch in this fresh process, then the search."""
    import gc

    import jax
    import keras
    import numpy as np

    device = jax.devices()[0]
    started = time.perf_counter()
    probes = []  # [batch, fits, seconds]

    def step(batch):
        t = time.perf_counter()
        keras.utils.set_random_seed(0)
        try:
            model, shape, lr = build(spec["model"], spec["method"], smoke)
            model.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=True)
            rng = np.random.default_rng(0)
            model.fit(rng.standard_normal((batch,) + shape, dtype="float32"),
                      rng.integers(0, 10, batch).astype("int32"), batch_size=batch, verbose=0)
            fits = True
        except Exception as e:  # noqa: BLE001 -- only running out of memory is an answer.
            if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
                raise
            fits = False
        model = None
        keras.backend.clear_session()
        gc.collect()
        probes.append([batch, fits, round(time.perf_counter() - t, 1)])
        return fits

    batch = spec["batch"]
    step(batch)
    stats = device.memory_stats()
    if stats is None:
        return {"peak_bytes": None, "note": f"not available on {device.platform}",
                "probes": probes}
    row = {"peak_bytes": stats["peak_bytes_in_use"], "bytes_limit": stats.get("bytes_limit")}
    if not probes[0][1] or not spec["search_seconds"]:
        return dict(row, probes=probes)
    fit, fail, predicted = batch, None, None
    if step(4 * batch):
        fit, peak = 4 * batch, device.memory_stats()["peak_bytes_in_use"]
        per_example = (peak - row["peak_bytes"]) / (3 * batch)
        if per_example > 0 and row["bytes_limit"]:
            predicted = int(fit + (row["bytes_limit"] - peak) / per_example)
            row["bytes_per_example"] = round(per_example)
    else:
        fail = 4 * batch
    while time.perf_counter() - started + 1.2 * max(p[2] for p in probes) < spec["search_seconds"]:
        if fail is None:  # Just under the line's prediction, then up by 10%, else doubling.
            candidate = (0.97 * predicted if predicted and fit < 0.95 * predicted else
                         1.1 * fit if predicted and fit < 1.3 * predicted else 2 * fit)
        elif fail - fit <= max(64, 0.02 * fit):
            break
        else:
            candidate = (fit + fail) / 2
        candidate = max(fit + 64, int(candidate) // 64 * 64)
        if fail and candidate >= fail:
            break
        if step(candidate):
            fit = candidate
        else:
            fail = candidate
    return dict(row, largest_fit=fit, smallest_fail=fail, predicted_largest=predicted,
                probes=probes)


def run_learn(spec, smoke):
    """Part c: the light CNN on Fashion-MNIST, `epochs` epochs, then the test accuracy."""
    import keras
    import numpy as np

    from al_keras.data import idx_files

    files = idx_files.find_idx_files(spec["data_dir"])
    (x, y), (x_test, y_test) = (idx_files.read_idx_split(files, s) for s in ("train", "test"))
    train, test = spec["examples"]
    x, y, x_test, y_test = x[:train], y[:train], x_test[:test], y_test[:test]
    mean = np.float32(x.mean(dtype=np.float64) / 255.0)  # As the datasets' NumPy path.

    def prepare(images):
        return (images.astype("float32") / np.float32(255) - mean)[..., None]

    keras.utils.set_random_seed(0)
    model, _, _ = build("cnn_light", spec["method"], smoke)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  jit_compile=True, steps_per_execution=spec["spe"])
    start = time.perf_counter()
    history = model.fit(prepare(x), y.astype("int32"), batch_size=32, epochs=spec["epochs"],
                        verbose=0)
    seconds = time.perf_counter() - start
    scores = model.evaluate(prepare(x_test), y_test.astype("int32"), batch_size=1000,
                            verbose=0, return_dict=True)
    return {"test_accuracy": scores["accuracy"], "fit_seconds": round(seconds, 1),
            "train_examples": len(y), "test_examples": len(y_test),
            "train_accuracy": history.history["accuracy"][-1]}


def run_facts(spec, smoke):
    """Part f: the versions and devices a child process sees."""
    import jax
    import jaxlib
    import keras
    import numpy as np

    devices = jax.devices()
    facts = {"python": sys.version.split()[0], "jax": jax.__version__,
             "jaxlib": jaxlib.__version__, "keras": keras.__version__, "numpy": np.__version__,
             "jax_devices": [str(d) for d in devices], "jax_platform": jax.default_backend(),
             "device_kind": devices[0].device_kind}
    try:
        facts["platform_version"] = devices[0].client.platform_version
    except Exception:  # noqa: BLE001 -- a nicety.
        pass
    return facts


def child_main(specs, smoke):
    # As on the lent machine: these are not there (None in sys.modules: ImportError).
    sys.modules.update(tensorflow=None, ml_collections=None)
    import keras

    run = {"throughput": run_throughput, "memory": run_memory, "learn": run_learn,
           "facts": run_facts}
    rows = []
    for spec in specs:
        started = time.perf_counter()
        keras.mixed_precision.set_global_policy(spec.get("policy", "float32"))
        try:
            row = run[spec["kind"]](spec, smoke)
        except Exception as e:  # noqa: BLE001 -- a variant's failure is its result.
            row = {"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:400]}"}
        rows.append({**spec, **row, "process_seconds": round(time.perf_counter() - started, 1)})
    variants_lib.emit({"rows": json.loads(json.dumps(rows, default=str))})


# ----------------------------------------------------------------- the parent
def plan(parts, smoke, fashion):
    """The variants, grouped by process, in the order they run: every target's first."""
    s = SMOKE if smoke else FULL
    seconds = 0.3 if smoke else _SECONDS.value
    stages, flip = {}, [False]  # stage -> its variants; stages 1 to 3 hold the targets.

    def pair(stage, make):
        methods = ("bp", "al") if flip[0] else ("al", "bp")  # AL and BP alternate.
        flip[0] = not flip[0]
        stages.setdefault(stage, []).extend(make(m) for m in methods)

    if "a" in parts:
        for model in s["models_a"]:
            for policy in s["policies"]:
                stage = 5 if model != s["models_a"][0] else 1 if policy == "mixed_bfloat16" else 4
                pair(stage, lambda m, model=model, policy=policy: {
                    "part": "a", "kind": "throughput", "model": stand_in(model, smoke),
                    "method": m, "policy": policy, "batches": list(s["batches"]),
                    "spe": s["spe"], "seconds": seconds})
    if "c" in parts and fashion:
        pair(2, lambda m: {"part": "c", "kind": "learn", "method": m, "data_dir": fashion,
                           "epochs": s["learn_epochs"], "examples": list(s["learn_examples"]),
                           "spe": s["spe"]})
    if "d" in parts or "e" in parts:
        for index, model in enumerate(s["pipe_models"]):
            def variant(method, devices, model=model):
                return {"part": "d", "kind": "throughput", "model": model, "method": method,
                        "devices": devices, "batches": [s["pipe_batch"]], "spe": 1,
                        "seconds": seconds}
            blocks = 8 if model.startswith("mlp8") else 4
            stages.setdefault(2.5 if index == 0 else 6, []).extend(
                [variant("al", 0), variant("bp", 0)])
            for k in s["devices"]:
                late = index or k != max(s["devices"])
                stages.setdefault(0 if k > blocks else 6 if late else 2.5, []).append(
                    dict(variant("al", k), **({"skipped": f"{k} devices, {blocks} blocks"}
                                              if k > blocks else {})))
    if "b" in parts:
        pair(3, lambda m: {"part": "b", "kind": "memory", "model": s["memory_model"],
                           "method": m, "batch": s["memory_batch"],
                           "search_seconds": 0 if smoke else _SEARCH.value})
    specs = [spec for stage in sorted(stages) for spec in stages[stage]]
    if smoke:  # Parts a-c share a process, part d has another.
        groups = [[x for x in specs if x["part"] in p and "skipped" not in x] for p in ("abc", "d")]
        return [g for g in groups if g] + [[x] for x in specs if "skipped" in x]
    return [[x] for x in specs]


def env_of(specs):
    """The child's environment: JAX; part d on the CPU split into K devices."""
    env = {"KERAS_BACKEND": "jax"}
    devices = max(x.get("devices", 0) for x in specs)
    if specs[0]["part"] == "d":
        env["JAX_PLATFORMS"] = "cpu"
        if devices > 1:
            env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                f" --xla_force_host_platform_device_count={devices}").strip()
    return env


def name_of(spec):
    name = ":".join(str(spec[k]) for k in ("part", "model", "method", "policy") if k in spec)
    return name + (f":{spec['devices']}dev" if spec.get("devices") else "")


def has_idx_files(folder):
    """Whether `folder` holds Fashion-MNIST's four idx files (plain or .gz).  The parent
    imports no Keras: with JAX it could claim the GPU's memory for the whole run."""
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
    return bool(folder) and all(any(os.path.isfile(os.path.join(folder, n + z))
                                    for z in ("", ".gz")) for n in names)


def nvidia_smi():
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
            capture_output=True, text=True, timeout=30, check=True).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError) as e:
        return f"not available ({type(e).__name__})"


def main(argv):
    del argv
    if _CHILD.value:
        child_main(json.loads(_SPEC.value), _SMOKE.value)
        return
    if not _OUT.value:
        raise app.UsageError("--out=FOLDER is required.")
    started, smoke, parts = time.time(), _SMOKE.value, set(_PARTS.value)
    if parts - set("abcde"):
        raise app.UsageError(f"--parts: unknown {sorted(parts - set('abcde'))}; a to e.")
    fashion = os.path.abspath(_DATA.value) if has_idx_files(_DATA.value) else ""
    report = {"machine": {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nvidia_smi": nvidia_smi(), "cpu_count": os.cpu_count(),
        "command": " ".join(["python"] + sys.argv)},
        "parts": {}, "targets": {}, "skipped": [], "smoke": smoke,
        "budget_seconds": _BUDGET.value}
    rows, took = [], {}
    for task in [[{"part": "facts", "kind": "facts"}]] + plan(parts, smoke, fashion):
        first, left = task[0], started + _BUDGET.value - time.time()
        key = (first["part"], first.get("model"), first.get("devices", 0) > 0)
        guess = took.get(key) or GUESS[key[0]] * (1 + key[2]) + first.get("search_seconds", 0)
        if "skipped" in first or guess > left:
            report["skipped"] += [{"part": x["part"], "variant": name_of(x), "reason": x.get(
                "skipped", f"--budget_seconds: {left:.0f} s left, a variant of its kind takes "
                           f"~{guess:.0f} s")} for x in task]
            continue
        begin = time.time()
        name = name_of(first) if len(task) == 1 else "smoke:" + "".join(
            sorted({x["part"] for x in task}))
        try:
            found = variants_lib.spawn(__file__, name, args=[
                "--spec=" + json.dumps(task)] + (["--smoke"] if smoke else []),
                env=env_of(task), timeout=max(5, left))["rows"]
        except variants_lib.VariantError as e:
            found = [dict(x, error=str(e)) for x in task]
        took[key] = max(took.get(key, 0), time.time() - begin)
        for row in found:
            print(f"[{time.time() - started:4.0f} s] {name_of(row)}: "
                  + (row.get("error") or "done"), flush=True)
        if first["part"] == "facts":
            report["machine"].update({k: v for k, v in found[0].items()
                                      if k not in ("part", "kind")})
        else:
            rows += found
        finish(report, rows, parts, fashion, started)
    finish(report, rows, parts, fashion, started)
    print(f"device_check: {time.time() - started:.0f} s; {_OUT.value}/device_check.md")


# --------------------------------------------------------------- the report
def finish(report, rows, parts, fashion, started):
    """Brings the report up to date with `rows` and writes it."""
    report["parts"], report["targets"] = summarise(rows, parts, report["smoke"], fashion,
                                                   report["machine"])
    report["seconds"] = round(time.time() - started)
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "device_check.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(os.path.join(_OUT.value, "device_check.md"), "w") as f:
        f.write(markdown(report))


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def find(rows, **keys):
    return next((r for r in rows if all(r.get(k) == v for k, v in keys.items())), None)


def target(part, what, measured, threshold, met, reason):
    """A target: met is None, with the reason, when it was not measured."""
    return {"part": part, "what": what, "measured": measured, "threshold": threshold,
            "met": None if measured is None else bool(met),
            "reason": reason if measured is None else None}


def summarise(rows, parts, smoke, fashion, machine):
    """The report's "parts" and "targets" from the rows so far."""
    s = SMOKE if smoke else FULL
    on = machine.get("jax_platform", "?") + (" (SMOKE: tiny models and steps)" if smoke else "")
    out = {p: {"rows": []} if p in parts or (p == "d" and "e" in parts) else
           {"rows": [], "skipped": "not in --parts"} for p in "abcde"}

    def why(*found):
        errors = [r["error"] for r in found if r and r.get("error")]
        return errors[0] if errors else "not measured: see \"skipped\" or the part"

    def flat(r, keys):  # A part's row: the spec's keys, and the figures of its (first) batch.
        for batch, figures in (r.get("by_batch") or {None: {}}).items():
            yield dict({k: r.get(k) for k in keys}, batch=batch and int(batch), **figures)

    keys = ("model", "policy", "method", "devices", "error", "process_seconds")
    a = [f for r in rows if r["part"] == "a" for f in flat(r, keys)]
    out["a"].update(ran_on=on, data=SYNTHETIC, steps_per_execution=s["spe"], rows=a, al_over_bp=[
        dict({k: r[k] for k in ("model", "policy", "batch")}, al_over_bp=ratio(
            r.get("examples_per_second"), (find(a, **{k: r[k] for k in (
                "model", "policy", "batch")}, method="bp") or {}).get("examples_per_second")))
        for r in a if r["method"] == "al"])
    model, batch = stand_in("resnet20_light", smoke), s["batches"][0]
    hit = find(out["a"]["al_over_bp"], model=model, policy="mixed_bfloat16", batch=batch)
    value = hit and hit["al_over_bp"]
    targets = {"a": target("a", f"AL/BP examples/s, {model}, batch {batch}, bf16", value,
                           ">= 1.0", value and value >= 1.0, why(*[find(
                               rows, part="a", model=model, method=m) for m in ("al", "bp")]))}

    b = [{k: v for k, v in r.items() if k not in ("part", "kind")} for r in rows
         if r["part"] == "b"]
    for r in b:
        r.update({f"{k}_gib": round(r[k] / 2**30, 2) for k in ("peak_bytes", "bytes_limit")
                  if r.get(k)})
    al, bp = find(b, method="al"), find(b, method="bp")
    peak = ratio(al and al.get("peak_bytes"), bp and bp.get("peak_bytes"))
    out["b"].update(ran_on=on, model=s["memory_model"], batch=s["memory_batch"], rows=b,
                    al_over_bp_peak=peak)
    na = next((r["note"] for r in b if r.get("note")), None)
    targets["b_peak"] = target("b", f"AL/BP peak bytes, batch {s['memory_batch']}", peak,
                               "<= 0.6", peak and peak <= 0.6, na or why(al, bp))
    fits = [r and r.get("largest_fit") for r in (al, bp)]
    targets["b_batch"] = target(
        "b", "largest batch that trains [AL, BP]", None if None in fits else fits, "AL > BP",
        None not in fits and fits[0] > fits[1],
        na or ("no search in a smoke run" if smoke else why(al, bp)))

    c = [{k: v for k, v in r.items() if k not in ("part", "kind", "data_dir")} for r in rows
         if r["part"] == "c"]
    al, bp = find(c, method="al"), find(c, method="bp")
    gap = (round(al["test_accuracy"] - bp["test_accuracy"], 4)
           if al and bp and "test_accuracy" in al and "test_accuracy" in bp else None)
    out["c"].update(ran_on=on, model="cnn_light", rows=c, al_minus_bp=gap)
    if not fashion and "c" in parts:
        out["c"]["skipped"] = f"no Fashion-MNIST idx files in {_DATA.value!r}"
    targets["c"] = target("c", "AL - BP test accuracy", gap, ">= -0.01",
                          gap is not None and gap >= -0.01, out["c"].get("skipped") or why(al, bp))

    d = [f for r in rows if r["part"] == "d" for f in flat(r, keys)]
    for r in d:
        r["variant"] = (f"AL pipelined, {r['devices']} devices" if r["devices"] else
                        f"{r['method'].upper()}, one device")
        if not r["devices"]:
            continue
        base = (find(d, model=r["model"], method="al", devices=0) or {}).get("steps_per_second")
        bp = (find(d, model=r["model"], method="bp", devices=0) or {}).get("steps_per_second")
        measured = r.get("steps_per_second")
        r.update(over_bp=ratio(measured, bp), over_al_one_device=ratio(measured, base))
        row = {"model": r["model"], "devices": r["devices"], "measured": measured,
               "al_one_device": base, "error": r["error"]}
        for key in ("predicted", "simulated"):
            row[key] = r.get(f"{key}_speedup") and base and r[f"{key}_speedup"] * base
            row[f"measured_over_{key}"] = ratio(measured, row[key])
        out["e"]["rows"].append(row)
    out["d"].update(ran_on="cpu: JAX_PLATFORMS=cpu, K host devices (XLA_FLAGS=--xla_force_"
                           "host_platform_device_count=K)", cpu_count=os.cpu_count(),
                    batch=s["pipe_batch"], steps_per_execution=1, rows=d)
    model, k = s["pipe_models"][0], max(s["devices"])
    hit = find(d, model=model, devices=k)
    value = hit and hit.get("over_bp")
    targets["d"] = target("d", f"AL pipelined on {k} devices / BP one device, {model}", value,
                          ">= 1.5", value and value >= 1.5, why(hit))
    hit = find(out["e"]["rows"], model=model, devices=k)
    value = hit and hit["measured_over_predicted"]
    targets["e"] = target("e", f"measured / predicted (overlap) steps/s, {model}, {k} devices",
                          value, ">= 0.8", value and value >= 0.8, why(hit))
    for t in targets.values():
        if t["part"] not in parts and not (t["part"] == "d" and "e" in parts):
            t["reason"] = "not in --parts"
    return out, targets


def table(rows, columns):
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return "-" if v is None or v == "" else str(v).replace("|", "/")
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] +
                     ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows])


SECTIONS = [  # (part, title, key of the rows, columns)
    ("a", "GPU throughput, examples/s", "rows", ["model", "policy", "method", "batch",
     "examples_per_second", "timed_steps", "first_fit_seconds", "error"]),
    ("a", "AL / BP", "al_over_bp", ["model", "policy", "batch", "al_over_bp"]),
    ("b", "GPU memory", "rows", ["model", "method", "batch", "peak_bytes_gib", "bytes_limit_gib",
     "largest_fit", "smallest_fail", "predicted_largest", "probes", "note", "error"]),
    ("c", "Learning: Fashion-MNIST light CNN", "rows", ["method", "epochs", "test_accuracy",
     "train_accuracy", "fit_seconds", "train_examples", "error"]),
    ("d", "Pipelining on the CPU cores, steps/s", "rows", ["model", "variant",
     "steps_per_second", "over_bp", "over_al_one_device", "cores_used", "predicted_speedup",
     "placement", "error"]),
    ("e", "Predicted (AL on one device x speedup) against measured, steps/s", "rows",
     ["model", "devices", "measured", "predicted", "measured_over_predicted", "simulated",
      "measured_over_simulated", "error"])]


def markdown(report):
    m, parts = report["machine"], report["parts"]
    lines = [f"# device_check{' (SMOKE)' if report['smoke'] else ''}: {m['date']}, "
             f"{report.get('seconds')} s", "",
             f"nvidia-smi: {m['nvidia_smi']}; {m['cpu_count']} CPUs; python {m.get('python')}, "
             f"jax {m.get('jax')}, jaxlib {m.get('jaxlib')}, keras {m.get('keras')}, numpy "
             f"{m.get('numpy')}; jax.devices(): {m.get('jax_devices')}; `{m['command']}`", ""]
    for part, title, key, columns in SECTIONS:
        info = parts[part]
        notes = [f"{k}: {info[k]}" for k in ("ran_on", "data", "skipped")
                 if key == "rows" and info.get(k)]
        lines += [f"## {part}. {title}", ""] + ([("; ".join(notes)), ""] if notes else []) + [
            table(info.get(key, []), columns), ""]
    lines += ["## Targets", "", table([dict(t, id=i) for i, t in report["targets"].items()],
                                      ["id", "what", "measured", "threshold", "met", "reason"]),
              "", "## Skipped", "", table(report["skipped"], ["part", "variant", "reason"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
