"""The pipeline simulator calibrated with Ray: checked at K = 2, then K = 4, 8, 16.

    python benchmarks/ray_calibration.py [--model=cnn_light] [--steps=80]
        [--json=/tmp/ray_calibration.json]

Five parts, printed in this order (`--json` writes every figure):

1. Ray on this machine (a local Ray of `os.cpu_count()` CPUs): two actors
   in a pipelined chain, driven as `RayPipeline`'s engine drives its stages
   (each step calls actor 0 on a new input and actor 1 on what actor 0 handed
   on the step before, at most 2 steps in flight, 3 results per call).
   *Per-call overhead*: the median seconds per step of `--overhead_steps`
   steps whose actors do nothing with small numpy inputs; *driver overhead*:
   the driver's CPU seconds per stage call in them.  *Object store*: the
   same chain with actor 0 handing on float32 arrays of `--transfer_sizes`
   MB (3.2 MB is a batch of 32 of 28x28x32 activations, the light CNN's
   block 1), `--transfer_steps` steps each, the sizes interleaved over 3
   rounds; a line fitted to the median seconds per step against the bytes
   (Theil-Sen: the median of the pairwise slopes, robust to one disturbed
   size) gives the throughput (bytes/s, 1 / slope) and the latency (its
   intercept less the per-call overhead).
2. The block step costs of `--model` (a row of throughput.py's MODELS, batch
   32, Adam) in a `StageWorker` per block inside a Ray actor with one
   TensorFlow thread and XLA, as a stage trains them: the median seconds of
   `--block_calls` calls of `StageWorker.step` (numpy in, numpy handed on),
   with the actor alone on the machine, and with a second actor timing the
   same blocks at the same time (two stages on two cores), alternated in two
   rounds.
3. The simulator's K = 2 prediction for `RayPipeline` on this machine
   (`pipeline_simulator.simulate`, al_pipelined, steady state): the blocks'
   costs with the second actor running, the per-call and driver overheads,
   and the hand-over through the measured object store paid by the stage
   that hands on.  Printed before the real run starts, for the simulator's
   balanced placement; again for the real run's stages if they differ (that
   one is compared).
4. The real K = 2 `RayPipeline` on the same model, in its own process
   (`throughput.py --child=MODEL:ray_2 --steps=STEPS`: steady-state steps/s
   of an epoch of STEPS batches; `--nomeasure` skips it); then predicted /
   measured and whether it is within 15%.
5. Predicted steps/s and speedup over one process for K = 4, 8, 16 stages
   over `10gbe` and `nvlink` links (`--links`), `--steps_per_call` batches
   per Ray call, fill and drain once per `--steps_per_epoch` steps.  The
   assumed network has 16 blocks: the measured model's blocks repeated
   (e.g. the light CNN's 4 blocks 4 times), each with its measured cost
   alone (one stage per host, each on one core like the actor's) and its
   hand-over (the last block's: its `s`, `t` and sample weights, float32);
   transfers over the link overlap compute (Ray's object manager moves
   them), the object store's copy does not.  One process is the 16 blocks
   in series on one such core.

`--steps` and `--json` are throughput.py's flags (imported for its MODELS),
and so is `--steps_per_execution` where it has it: the real run's batches
per Ray call, and the K = 2 prediction's.
The defaults take about 2.5 minutes on 2 cores; a short check of the script,
`--overhead_steps=60 --transfer_steps=15 --block_calls=6 --steps=40`,
about 1.5 minutes.
"""

import json
import math
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import throughput  # noqa: E402 (MODELS; defines --steps and --json)
from al_keras.distribute import pipeline_simulator as ps  # noqa: E402

_MODEL = flags.DEFINE_enum("model", "cnn_light", list(throughput.MODELS), "Model.")
_OVERHEAD_STEPS = flags.DEFINE_integer("overhead_steps", 300, "Steps of the no-op chain.")
_TRANSFER_STEPS = flags.DEFINE_integer("transfer_steps", 60, "Steps per transfer size.")
_TRANSFER_SIZES = flags.DEFINE_list("transfer_sizes", ["0.8", "1.6", "3.2", "6.4", "12.8"],
                                    "Sizes handed on, MB.")
_BLOCK_CALLS = flags.DEFINE_integer("block_calls", 20, "Timed calls per block.")
_LINKS = flags.DEFINE_list("links", ["10gbe", "nvlink"], "Links of the predictions.")
_STEPS_PER_CALL = flags.DEFINE_list("steps_per_call", ["1", "8"],
                                    "Batches per Ray call of the predictions.")
_STEPS_PER_EPOCH = flags.DEFINE_integer("steps_per_epoch", 1875,
                                        "Fill and drain once per this many steps.")
_MEASURE = flags.DEFINE_bool("measure", True, "Run the real K = 2 RayPipeline.")

BATCH, SKIPPED, TOLERANCE, DEEP_BLOCKS, ROUNDS = 32, 10, 0.15, 16, 3


class Relay:
    """A stage that computes nothing: hands on `(array, t, w)` of a set size."""

    def __init__(self):
        import numpy as np

        self._np = np
        self.resize(1280)

    def resize(self, num_bytes):
        np = self._np
        self.handed_on = (np.ones(max(1, num_bytes // 4), "float32"),
                          np.ones((BATCH, 10), "float32"), np.ones(BATCH, "float32"))

    def step(self, inputs, decoding=None, learning_rate=None):
        return self.handed_on, None, {"busy_seconds": 0.0}


class BlockTimer:
    """One `StageWorker` per block of a model, in one process of one thread."""

    def __init__(self, model_config, input_shape, optimizer_config, num_blocks):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from al_keras.distribute.ray_stage import StageWorker

        self.stages = [StageWorker(model_config, input_shape, optimizer_config, [index],
                                   last=index == num_blocks - 1, threads=0)
                       for index in range(num_blocks)]

    def time_blocks(self, batch, calls, warmup=2):
        """Per block: the seconds of `calls` steps, and the bytes handed on."""
        rows, inputs = [], batch
        for stage in self.stages:

            def step(inputs, stage=stage):  # One batch a call.
                handed_on, _, _ = stage.step([inputs], None, 1e-3)
                return handed_on and handed_on[0]

            for _ in range(warmup):
                handed_on = step(inputs)
            seconds = []
            for _ in range(calls):
                start = time.perf_counter()
                handed_on = step(inputs)
                seconds.append(time.perf_counter() - start)
            rows.append({"seconds": seconds,
                         "handed_on_bytes": sum(a.nbytes for a in handed_on or ())})
            inputs = handed_on
        return rows


def _chain(ray, stages, steps, steps_ahead=2):
    """Seconds of each step of the two-stage chain (after the first
    SKIPPED), and the driver's CPU seconds per stage call."""
    import numpy as np

    small = (np.ones((BATCH, 10), "float32"), np.zeros(BATCH, "int32"),
             np.ones(BATCH, "float32"))  # Passed by value, as a batch is.
    pending, inflight, ends, calls = None, [], [], 0
    cpu = time.process_time()
    for _ in range(steps + steps_ahead):
        handed_on, back, stats = stages[0].step.options(num_returns=3).remote(small)
        started = [back, stats]
        if pending is not None:
            started += stages[1].step.options(num_returns=3).remote(pending)
        calls += 1 + (pending is not None)
        pending = handed_on
        inflight.append(started)
        while len(inflight) > steps_ahead:
            ray.get(inflight.pop(0))
            ends.append(time.perf_counter())
    for started in inflight:
        ray.get(started)
    cpu = time.process_time() - cpu
    return [b - a for a, b in zip(ends, ends[1:])][SKIPPED:], cpu / calls


def measure_ray(ray):
    """Part 1: per-call overhead, driver overhead, object-store throughput."""
    stages = [ray.remote(Relay).options(num_cpus=1).remote() for _ in range(2)]
    ray.get([s.resize.remote(1280) for s in stages])
    intervals, driver = _chain(ray, stages, _OVERHEAD_STEPS.value)
    overhead = statistics.median(intervals)
    sizes = [int(float(megabytes) * 1e6) for megabytes in _TRANSFER_SIZES.value]
    steps = {size: [] for size in sizes}
    for _ in range(ROUNDS):  # Sizes interleaved: a burst of load hits all alike.
        for size in sizes:
            ray.get(stages[0].resize.remote(size))
            steps[size] += _chain(ray, stages, SKIPPED + _TRANSFER_STEPS.value // ROUNDS)[0]
    seconds = [statistics.median(steps[size]) for size in sizes]
    for stage in stages:
        ray.kill(stage)
    # Theil-Sen: the median of the pairwise slopes, robust to one slow size.
    slope = statistics.median((seconds[j] - seconds[i]) / (sizes[j] - sizes[i])
                              for i in range(len(sizes)) for j in range(i + 1, len(sizes)))
    intercept = statistics.median(y - slope * x for x, y in zip(sizes, seconds))
    return {"call_overhead_s": overhead, "driver_overhead_s": driver,
            "transfer_bytes": sizes, "transfer_step_s": seconds,
            "store_bandwidth_bytes_per_s": 1.0 / max(slope, 1e-12),
            "store_latency_s": max(0.0, intercept - overhead)}


def _model_spec(model_name):
    """(model config, input shape, optimizer config, blocks, bytes the last
    block's s and t and the weights make per batch) of a MODELS row."""
    import keras

    from al_keras import models
    from al_keras.training import config_lib

    config_name, arg, overrides = throughput.MODELS[model_name]
    config = config_lib.load_config_module(os.path.join(
        throughput.ROOT, "configs", f"{config_name}.py")).get_config(f"{arg},method=al")
    shape = (28, 28, 1) if config_name == "fashion_mnist" else (32, 32, 3)
    options = {k: v for k, v in config.model_options.to_dict().items() if v is not None}
    options.update(overrides)
    model = models.get(config.model, input_shape=shape, num_classes=10, method="al",
                       **options)
    serialized = keras.saving.serialize_keras_object(model)
    serialized.pop("compile_config", None)
    s_shape = (BATCH,) + shape
    for block in model.blocks:
        s_shape = tuple(block.compute_output_shape(s_shape))
    last_bytes = 4 * (math.prod(s_shape) + BATCH * model.blocks[-1].label_units + BATCH)
    return (serialized, shape, keras.optimizers.serialize(keras.optimizers.Adam(1e-3)),
            model.num_blocks, last_bytes)


def measure_blocks(ray, model_name):
    """Part 2: each block's step cost in a one-thread StageWorker actor."""
    import numpy as np

    config, shape, optimizer, num_blocks, last_bytes = _model_spec(model_name)
    rng = np.random.default_rng(0)
    batch = (rng.random((BATCH,) + shape).astype("float32"),
             rng.integers(0, 10, BATCH).astype("int32"), np.ones(BATCH, "float32"))
    timers = [ray.remote(BlockTimer).options(num_cpus=1).remote(
        config, shape, optimizer, num_blocks) for _ in range(2)]
    ray.get([t.time_blocks.remote(batch, 1) for t in timers])  # Compiled, both.
    calls = max(1, _BLOCK_CALLS.value // 2)
    alone, loaded = [[] for _ in range(num_blocks)], [[] for _ in range(num_blocks)]
    for _ in range(2):  # Alternated: a burst of load hits both alike.
        for i, row in enumerate(ray.get(timers[0].time_blocks.remote(batch, calls))):
            alone[i] += row["seconds"]
        for rows in ray.get([t.time_blocks.remote(batch, calls) for t in timers]):
            for i, row in enumerate(rows):
                loaded[i] += row["seconds"]
    handed_on = [row["handed_on_bytes"] for row in rows]
    for timer in timers:
        ray.kill(timer)
    return {"alone_s": [statistics.median(s) for s in alone],
            "loaded_s": [statistics.median(s) for s in loaded],
            "handed_on_bytes": handed_on,  # The last block hands nothing on,
            "last_block_output_bytes": last_bytes}  # but would, repeated.


def _blocks(seconds, handed_on):
    # The pipelined schedule needs each block's whole step only.
    return [ps.BlockCost(0.0, s, activation_bytes=b) for s, b in zip(seconds, handed_on)]


def _batches_per_call():
    """throughput.py's --steps_per_execution, where it has the flag, else 1."""
    flag = getattr(throughput, "_STEPS_PER_EXECUTION", None)
    return flag.value if flag is not None else 1


def predict_k2(ray_figures, block_figures, stage_blocks=None):
    """Part 3: al_pipelined steps/s of 2 stages on this machine."""
    costs = block_figures["loaded_s"]
    if stage_blocks is None:
        placement = ps.balanced_partition(costs, 2)
        stage_blocks = [[b for b, d in enumerate(placement) if d == k] for k in range(2)]
    stages = [ps.BlockCost(0.0, sum(costs[b] for b in blocks),
                           activation_bytes=block_figures["handed_on_bytes"][blocks[-1]])
              for blocks in stage_blocks]
    result = ps.simulate(stages, 2, **_process_terms(ray_figures, _batches_per_call())
                         )["al_pipelined"]
    return {"stages": stage_blocks, "steps_per_call": _batches_per_call(),
            "steps_per_second": result.throughput, "bottleneck": result.bottleneck}


def _store(ray_figures):
    return ps.Link("ray_object_store (measured, one host)",
                   ray_figures["store_bandwidth_bytes_per_s"],
                   ray_figures["store_latency_s"])


def _process_terms(ray_figures, steps_per_call=1):
    return dict(call_overhead=ray_figures["call_overhead_s"],
                driver_overhead=ray_figures["driver_overhead_s"],
                handover=_store(ray_figures), steps_per_call=steps_per_call)


def measure_k2(model_name):
    """Part 4: the real 2-stage RayPipeline's steady-state steps/s."""
    batches = ([f"--steps_per_execution={_batches_per_call()}"]
               if _batches_per_call() != 1 else [])
    proc = subprocess.run(
        [sys.executable, throughput.__file__, f"--child={model_name}:ray_2",
         f"--steps={throughput._STEPS.value}", *batches], capture_output=True, text=True,
        # A Ray of its own, even while another one runs on this machine.
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", RAY_ADDRESS="local"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{model_name}:ray_2 failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def predict_deep(ray_figures, block_figures):
    """Part 5: K = 4, 8, 16 over the links, for 16 blocks."""
    num_blocks = len(block_figures["alone_s"])
    repeats = math.ceil(DEEP_BLOCKS / num_blocks)
    handed_on = block_figures["handed_on_bytes"][:-1] + [
        block_figures["last_block_output_bytes"]]
    blocks = (_blocks(block_figures["alone_s"], handed_on) * repeats)[:DEEP_BLOCKS]
    one_process = 1.0 / sum(b.compute for b in blocks)
    rows = []
    for link in _LINKS.value:
        for steps_per_call in (int(n) for n in _STEPS_PER_CALL.value):
            row = {"link": link, "steps_per_call": steps_per_call, "stages": {}}
            for stages in (4, 8, 16):
                result = ps.simulate(blocks, stages, link_bandwidth=link,
                                     steps_per_epoch=_STEPS_PER_EPOCH.value,
                                     **_process_terms(ray_figures, steps_per_call)
                                     )["al_pipelined"]
                row["stages"][stages] = {
                    "steps_per_second": result.throughput,
                    "speedup_over_one_process": result.speedup_vs_al1,
                    "bottleneck": result.bottleneck}
            rows.append(row)
    return {"blocks": DEEP_BLOCKS, "repeats_of_the_model": repeats,
            "one_process_steps_per_second": one_process, "rows": rows}


def _ms(values):
    return "[" + ", ".join(f"{1e3 * v:.1f}" for v in values) + "]"


def main(argv):
    del argv
    import ray

    # "local": a Ray of its own, even while another one runs on this machine.
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False)
    try:
        ray_figures = measure_ray(ray)
        block_figures = measure_blocks(ray, _MODEL.value)
    finally:
        ray.shutdown()
    store = _store(ray_figures)
    print(f"Ray {ray.__version__}, {os.cpu_count()} cores: per-call overhead "
          f"{1e3 * ray_figures['call_overhead_s']:.2f} ms a step (2-actor pipelined chain, "
          f"median of {_OVERHEAD_STEPS.value}); driver CPU "
          f"{1e3 * ray_figures['driver_overhead_s']:.2f} ms per stage call; object store "
          f"{store.bandwidth / 1e9:.2f} GB/s, latency {1e3 * store.latency:.2f} ms "
          f"(fit of {len(ray_figures['transfer_bytes'])} sizes: "
          f"{_ms(ray_figures['transfer_step_s'])} ms a step).")
    print(f"{_MODEL.value} block step costs (StageWorker actor, 1 thread, XLA), ms: alone "
          f"{_ms(block_figures['alone_s'])}, with a second actor "
          f"{_ms(block_figures['loaded_s'])}; bytes handed on "
          f"{block_figures['handed_on_bytes']}.")
    predicted = predict_k2(ray_figures, block_figures)
    print(f"K=2 predicted ({predicted['steps_per_call']} batches per call): "
          f"{predicted['steps_per_second']:.2f} steps/s, stages "
          f"{[[b + 1 for b in s] for s in predicted['stages']]} "
          f"({predicted['bottleneck']}).", flush=True)
    report = {"model": _MODEL.value, "cores": os.cpu_count(), "ray": ray.__version__,
              "ray_figures": ray_figures, "block_figures": block_figures,
              "k2_predicted": predicted}
    measured = None
    if _MEASURE.value:
        try:
            measured = measure_k2(_MODEL.value)
        except RuntimeError as e:
            report["k2_measure_error"] = str(e)
            print(f"K=2 measurement failed: {str(e).splitlines()[-1]}")
    if measured:
        if measured["stages"] != predicted["stages"]:
            predicted = predict_k2(ray_figures, block_figures, measured["stages"])
            report["k2_predicted_for_measured_stages"] = predicted
            print(f"K=2 predicted for the measured run's stages "
                  f"{[[b + 1 for b in s] for s in predicted['stages']]}: "
                  f"{predicted['steps_per_second']:.2f} steps/s.")
        ratio = predicted["steps_per_second"] / measured["steps_per_second"]
        within = abs(ratio - 1) <= TOLERANCE
        report.update(k2_measured=measured, k2_predicted_over_measured=ratio,
                      k2_within_15_percent=within)
        print(f"K=2 measured (throughput.py ray_2, {throughput._STEPS.value} steps): "
              f"{measured['steps_per_second']:.2f} steps/s (stage busy "
              f"{[round(b, 2) for b in measured['busy']]}); predicted / measured "
              f"{ratio:.3f}: {'within' if within else 'NOT within'} 15%.")
    deep = predict_deep(ray_figures, block_figures)
    report["deep"] = deep
    print(f"\nPredicted, {DEEP_BLOCKS} blocks ({_MODEL.value}'s blocks repeated "
          f"{deep['repeats_of_the_model']}x, costs alone), one stage per host, fill and "
          f"drain per {_STEPS_PER_EPOCH.value} steps; one process: "
          f"{deep['one_process_steps_per_second']:.2f} steps/s. Steps/s (speedup):")
    print("| link | batches per call | K=4 | K=8 | K=16 |\n|---|---|---|---|---|")
    for row in deep["rows"]:
        cells = " | ".join(f"{v['steps_per_second']:.2f} ({v['speedup_over_one_process']:.2f}x)"
                           for v in row["stages"].values())
        print(f"| {row['link']} | {row['steps_per_call']} | {cells} |")
    if throughput._JSON.value:
        with open(throughput._JSON.value, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    app.run(main)
