"""Every GPU claim of al_keras in one run: `bash benchmarks/gpu_check.sh`.

    python benchmarks/gpu_check.py --json=/tmp/gpu_check.json \
        [--fashion_mnist_dir=DIR] [--budget_seconds=450] [--smoke]

Meant for a machine with at least one NVIDIA GPU and a venv made by the
README's install command plus `.[ray]`; it runs on a CPU too (`--smoke`).
It writes one JSON (`--json`) and prints one table:

a. VGG and ResNet-20 (configs/cifar10.py's models and options), AL and BP,
   XLA, float32 and `mixed_bfloat16`: training examples/s and the AL/BP
   ratio.  The data is SYNTHETIC and CIFAR-shaped (random 32x32x3 images,
   held in memory): no CIFAR-10 reaches the project's machines, and these
   parts time steps, they do not measure accuracy.
b. The same AL models (float32) with `BlockParallel` on 2 logical GPUs
   (`split_gpu`: one GPU split in two, so the devices share the chip),
   pipelined and not, against AL on one device (part a's figure).
c. The Ray engine (`RayPipeline`) with 2 stages sharing the GPU (half a GPU
   each), if Ray is installed.
d. A learning check: 1 epoch of the Fashion-MNIST CNN, AL and BP, from the
   idx files in `--fashion_mnist_dir` (the GPU machine has neither network
   nor Debian's data: carry the folder along), else skipped, said so.
e. `nvidia-smi` facts and the TensorFlow, Keras and CUDA versions, at the top
   of the JSON.

Each variant runs in its own process (one after another, AL and BP
alternating), is warmed up (traced and compiled) before it is timed, and is
timed over two epochs of a few seconds, the faster counting.  Every variant
uses the same batch size (`--batch_size`, 128).  The run stops starting
variants when `--budget_seconds` would be passed, and names what it skipped.

`--smoke` checks the script itself on a CPU in about two minutes: the small
CNN stands in for VGG and ResNet-20, the CPU is split into logical devices,
the variants of a part share one process, the epochs are a few steps, and
part d trains the light-bridge CNN on 512 images.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_JSON = flags.DEFINE_string("json", "", "Where to write the JSON (default: print only).")
_FASHION = flags.DEFINE_string(
    "fashion_mnist_dir", "/usr/share/datasets/fashion-mnist",
    "Folder with Fashion-MNIST's idx files (part d); skipped if it has none.")
_BUDGET = flags.DEFINE_float("budget_seconds", 450.0,
                             "Start no variant that would end after this.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size of parts a-c.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Check the script on a CPU, quickly.")
_WORKER = flags.DEFINE_string("worker", "", "Internal: run these variants (JSON).")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("vgg", "resnet20")
RESULT = "GPU_CHECK_RESULT "
SYNTHETIC = ("SYNTHETIC CIFAR-shaped (random 32x32x3 images in memory): parts a-c "
             "time training steps, they do not measure accuracy")


# ------------------------------------------------------------------ plan
def plan(smoke, fashion_dir, ray_available):
    """The variants of each part, in the order they run."""
    models = ("cnn",) if smoke else MODELS
    parts = {"a": [], "b": [], "c": [], "d": []}
    for model in models:
        for policy in ("float32", "mixed_bfloat16"):
            for method in ("al", "bp"):  # AL and BP alternate.
                parts["a"].append(dict(part="a", kind="single", model=model,
                                       method=method, policy=policy))
    for model in models:
        for pipeline in (False, True):
            parts["b"].append(dict(part="b", kind="blocks", model=model, method="al",
                                   policy="float32", pipeline=pipeline, devices=2))
    if ray_available:
        parts["c"].append(dict(part="c", kind="ray", model=models[0], method="al",
                               policy="float32", stages=2))
    if fashion_dir:
        for method in ("al", "bp"):
            parts["d"].append(dict(part="d", kind="learn", method=method,
                                   data_dir=fashion_dir))
    return parts


def has_fashion_mnist(folder):
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return bool(folder) and all(
        os.path.exists(os.path.join(folder, n)) or os.path.exists(os.path.join(folder, n + ".gz"))
        for n in names)


# --------------------------------------------------------------- machine
def machine_facts():
    """Part e: the GPUs as nvidia-smi gives them, and the software versions."""
    import keras
    import tensorflow as tf

    facts = {"tensorflow": tf.__version__, "keras": keras.__version__,
             "python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    build = tf.sysconfig.get_build_info()
    facts["cuda_build"] = build.get("cuda_version")
    facts["cudnn_build"] = build.get("cudnn_version")
    facts["gpus_tensorflow_sees"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    try:
        import ray
        facts["ray"] = ray.__version__
    except ImportError:
        facts["ray"] = None
    query = "name,memory.total,driver_version,compute_cap,power.limit"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}",
                              "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        facts["nvidia_smi"] = [dict(zip(query.split(","), (v.strip() for v in line.split(","))))
                               for line in out.strip().splitlines()]
        version = subprocess.run(["nvidia-smi"], capture_output=True, text=True,
                                 timeout=30).stdout
        cuda = [w for w in version.split("|") if "CUDA Version" in w]
        facts["cuda_driver"] = cuda[0].split("CUDA Version:")[1].strip() if cuda else None
    except (OSError, subprocess.SubprocessError) as e:
        facts["nvidia_smi"] = f"not available ({type(e).__name__})"
    return facts


# ---------------------------------------------------------------- worker
def _synthetic(batch_size, steps=8, seed=0):
    """A repeating dataset of `steps` batches of random CIFAR-shaped images."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps * batch_size, 32, 32, 3), dtype="float32")
    y = rng.integers(0, 10, steps * batch_size).astype("int32")
    return (tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)
            .cache().repeat().prefetch(tf.data.AUTOTUNE))


def _model_options(name, method, smoke):
    from al_keras.training import config_lib

    if smoke:
        options = dict(filters=(8, 8, 16, 16))
        return dict(options, label_units=16) if method == "al" else options
    path = os.path.join(ROOT, "configs", "cifar10.py")
    config = config_lib.load_config_module(path).get_config(f"model={name},method={method}")
    return config.model_options.to_dict()


def _epoch_timer():
    """A callback that records the seconds of each training epoch."""
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimes()


def _throughput(model, data, batch_size, seconds, smoke):
    """Examples/s of `model.fit` on `data`: compiled first, then the faster of
    two epochs sized to last `seconds` each."""
    times = _epoch_timer()
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)  # Traced, compiled.
    probe = 3 if smoke else 10
    model.fit(data, epochs=1, steps_per_epoch=probe, verbose=0, callbacks=[times])
    step = times.seconds[-1] / probe
    steps = 3 if smoke else int(min(2000, max(10, seconds / max(step, 1e-6))))
    model.fit(data, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[times])
    best = min(times.seconds)
    return dict(examples_per_second=steps * batch_size / best,
                step_ms=1e3 * best / steps, timed_steps=steps)


def run_variant(spec, batch_size, smoke):
    import keras
    import tensorflow as tf

    import al_keras
    from al_keras import distribute
    from al_keras.training import train_lib

    keras.utils.set_random_seed(0)
    seconds = 0.3 if smoke else 2.5
    start = time.perf_counter()
    if spec["kind"] == "learn":
        return _learn(spec, smoke)
    options = _model_options(spec["model"], spec["method"], smoke)
    strategy, row = None, {}
    if spec["kind"] == "blocks":
        strategy = distribute.BlockParallel(_devices(spec["devices"]),
                                            pipeline=spec["pipeline"])
    elif spec["kind"] == "ray":
        import ray

        gpus = len(tf.config.list_physical_devices("GPU"))
        ray.init(num_cpus=max(2, os.cpu_count() or 2), num_gpus=gpus,
                 include_dashboard=False, configure_logging=False, log_to_driver=False)
        strategy = distribute.RayPipeline(
            num_stages=spec["stages"], gpus_per_stage=(gpus / spec["stages"]) if gpus else 0)
    with distribute.strategy_scope(strategy), train_lib.dtype_policy(spec["policy"]):
        model = al_keras.models.get(spec["model"], input_shape=(32, 32, 3), num_classes=10,
                                    method=spec["method"], **options)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), metrics=["accuracy"],
                      jit_compile=True,
                      steps_per_execution=8 if spec["kind"] == "ray" and not smoke else 1)
    row.update(_throughput(model, _synthetic(batch_size), batch_size, seconds, smoke))
    if spec["kind"] == "blocks":
        row["placement"] = strategy.placement
        row["describe"] = strategy.describe()
        row["predicted_speedup"] = strategy.predicted_speedup
    if spec["kind"] == "ray":
        row["describe"] = strategy.describe()
        strategy.shutdown()
    row["seconds"] = time.perf_counter() - start
    return row


def _devices(count):
    """`count` logical devices: the GPU split (`split_gpu`), or the CPU."""
    import tensorflow as tf

    from al_keras import distribute

    if tf.config.list_physical_devices("GPU"):
        return distribute.split_gpu(count)
    return distribute.split_cpu(count)


def _learn(spec, smoke):
    """Part d: one epoch of the Fashion-MNIST CNN through train.py's library."""
    from al_keras.training import config_lib, train_lib

    path = os.path.join(ROOT, "configs", "fashion_mnist.py")
    # Smoke: the light bridges (a fraction of the compile time) on 512 images.
    config = config_lib.load_config_module(path).get_config(
        f"model=cnn,method={spec['method']}" + (",light" if smoke else ""))
    config.update(epochs=1, data_dir=spec["data_dir"], export=False, eval_exits=False,
                  lr=1e-3, jit_compile=True)
    if smoke:
        config.update(max_train_examples=512, max_test_examples=256)
    with tempfile.TemporaryDirectory() as workdir:
        results = train_lib.train_and_evaluate(config, workdir, verbose=0)
    return dict(test_accuracy=results["test_accuracy"],
                train_examples=config.max_train_examples or 60000,
                train_seconds=results["train_seconds"],
                train_examples_per_second=results["examples_per_second"])


def worker_main(specs, batch_size, smoke):
    """Runs `specs` in this process; prints one RESULT line per variant."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if any(s["kind"] in ("blocks",) for s in specs):
        _devices(max(s["devices"] for s in specs if s["kind"] == "blocks"))
    for spec in specs:
        try:
            row = run_variant(spec, batch_size, smoke)
        except Exception as e:  # Reported in the table, not swallowed.
            row = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        print(RESULT + json.dumps(dict(spec, **row)), flush=True)


# ---------------------------------------------------------------- driver
def _run_workers(groups, batch_size, smoke, deadline):
    """Runs each group of variants in a process of its own; returns rows."""
    rows = []
    for group in groups:
        left = deadline - time.time()
        if left < 20:
            rows += [dict(s, skipped="out of time (--budget_seconds)") for s in group]
            continue
        command = [sys.executable, os.path.abspath(__file__), f"--worker={json.dumps(group)}",
                   f"--batch_size={batch_size}"] + (["--smoke"] if smoke else [])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=left,
                                  cwd=ROOT)
            found = [json.loads(line[len(RESULT):]) for line in done.stdout.splitlines()
                     if line.startswith(RESULT)]
            if len(found) < len(group):
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                found += [dict(s, error=f"worker exited {done.returncode}: {tail[:300]}")
                          for s in group[len(found):]]
        except subprocess.TimeoutExpired:
            found = [dict(s, skipped="out of time (--budget_seconds), killed") for s in group]
        for row in found:
            print(f"  {_label(row)}: {_figure(row)}", flush=True)
        print(f"  ({len(group)} variant{'s' if len(group) > 1 else ''} in one process: "
              f"{time.time() - (deadline - left):.0f} s)", flush=True)
        rows += found
    return rows


def _label(row):
    name = {"single": "", "blocks": f", BlockParallel {row.get('devices')} devices"
            + (" pipelined" if row.get("pipeline") else ""),
            "ray": f", Ray {row.get('stages')} stages", "learn": ""}[row["kind"]]
    model = row.get("model", "cnn (Fashion-MNIST)")
    return f"{row['part']}: {model} {row['method']} {row.get('policy', '')}{name}".strip()


def _figure(row):
    if "error" in row:
        return "ERROR " + row["error"]
    if "skipped" in row:
        return "skipped: " + row["skipped"]
    if "test_accuracy" in row:
        return f"test accuracy {row['test_accuracy']:.4f}"
    return f"{row['examples_per_second']:,.0f} examples/s ({row['step_ms']:.1f} ms/step)"


def summarize(rows):
    """Adds the ratios: AL/BP (part a), over one device (parts b, c)."""
    def speed(part, model, method, policy):
        for r in rows:
            if (r["part"], r.get("model"), r["method"], r.get("policy")) == (
                    part, model, method, policy) and "examples_per_second" in r:
                return r["examples_per_second"]
        return None

    for r in rows:
        if "examples_per_second" not in r:
            continue
        if r["part"] == "a" and r["method"] == "al":
            bp = speed("a", r["model"], "bp", r["policy"])
            r["ratio"] = bp and r["examples_per_second"] / bp
            r["ratio_of"] = "AL / BP"
        elif r["part"] == "a":
            r["ratio"], r["ratio_of"] = 1.0, "AL / BP"
        elif r["part"] in ("b", "c"):
            one = speed("a", r["model"], "al", r["policy"])
            r["ratio"] = one and r["examples_per_second"] / one
            r["ratio_of"] = "over AL on one device (part a)"
    return rows


def table(rows):
    lines = ["| part | model | method | variant | precision | examples/s | ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        variant = {"single": "one device, XLA", "learn": "1 epoch, XLA",
                   "blocks": f"BlockParallel, {r.get('devices')} logical devices, "
                             + ("pipelined" if r.get("pipeline") else "not pipelined"),
                   "ray": f"Ray, {r.get('stages')} stages sharing the device"}[r["kind"]]
        if "examples_per_second" in r:
            figure = f"{r['examples_per_second']:,.0f}"
            ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f} ({r['ratio_of']})"
        else:
            figure, ratio = _figure(r), "-"
        lines.append(f"| {r['part']} | {r.get('model', 'cnn (Fashion-MNIST)')} | {r['method']} "
                     f"| {variant} | {r.get('policy', 'float32')} | {figure} | {ratio} |")
    return "\n".join(lines)


def main(argv):
    del argv
    if _WORKER.value:
        worker_main(json.loads(_WORKER.value), _BATCH.value, _SMOKE.value)
        return
    started = time.time()
    deadline = started + _BUDGET.value
    facts = machine_facts()
    try:
        import ray  # noqa: F401
        ray_available = True
    except ImportError:
        ray_available = False
    fashion = _FASHION.value if has_fashion_mnist(_FASHION.value) else ""
    parts = plan(_SMOKE.value, fashion, ray_available)
    print(f"gpu_check: GPUs {facts['gpus_tensorflow_sees'] or 'none (CPU)'}, "
          f"TF {facts['tensorflow']}, data: {SYNTHETIC}", flush=True)
    rows = []
    for name in ("a", "d", "b", "c"):  # The learning check before the extras.
        variants = parts[name]
        groups = [variants] if _SMOKE.value and variants else [[v] for v in variants]
        rows += _run_workers(groups, _BATCH.value, _SMOKE.value, deadline)
    order = {"a": 0, "b": 1, "c": 2, "d": 3}
    rows = summarize(sorted(rows, key=lambda r: order[r["part"]]))
    skipped_parts = {}
    if not ray_available:
        skipped_parts["c"] = "Ray is not installed (pip install -e \".[ray]\")"
    if not fashion:
        skipped_parts["d"] = (f"no Fashion-MNIST idx files in {_FASHION.value!r} "
                              "(give --fashion_mnist_dir)")
    report = dict(
        command=" ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        smoke=_SMOKE.value, batch_size=_BATCH.value, machine=facts, data=SYNTHETIC,
        rows=rows, skipped_parts=skipped_parts, seconds=time.time() - started)
    print(table(rows))
    for part, why in skipped_parts.items():
        print(f"part {part} skipped: {why}")
    print(f"gpu_check: {report['seconds']:.0f} s", flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(report, f, indent=1)
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
