"""Blocks on separate devices: training throughput, side by side, and the
schedule simulator.

    python benchmarks/pipeline.py [--models=mlp,cnn] [--steps=40] [--rounds=3]
        [--json=/tmp/pipeline.json]
    python benchmarks/pipeline.py --simulate [--link=pcie4]

Here a device is one CPU core: the CPU is split into logical devices and
each op runs on one thread (`intra_op=1`).  Variants, for each model of the
Fashion-MNIST configs (28x28x1, batch 32, Adam, no XLA):

  a  AL, one device, inter_op=1: strictly serial (what a BP-style schedule
     gives an AL model)
  b  AL, blocks placed on 2 devices in one step graph, not pipelined,
     inter_op=2: TensorFlow's executor overlaps what is independent
  c  AL, blocks placed on 2 devices and pipelined, inter_op=2
  c4 AL pipelined on 4 devices (4-block models only), inter_op=2
  d1 the BP twin, intra_op=1, inter_op=1
  d2 the BP twin, intra_op=2

Each variant runs in its own process (thread settings are per process):
a warm-up epoch of 5 steps, then a timed epoch of `--steps` random batches
(for pipelined variants including the drain at the epoch's end).  Rounds
alternate the variants; the median steps/s of each is reported, with the
ratios c/a, b/a, c/b.  Placement is automatic (balanced by measured block
cost).  Then the simulator predicts, from the block costs measured in the
run (forward and rest of the step, bytes handed on), the throughput of each
schedule on K = 1, 2, 4, 8 devices.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

_MODELS = flags.DEFINE_list("models", ["mlp", "cnn"], "Zoo models to time.")
_STEPS = flags.DEFINE_integer("steps", 40, "Timed steps per run.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds over all variants.")
_JSON = flags.DEFINE_string("json", None, "Write the ratios here as JSON.")
_SIMULATE = flags.DEFINE_bool("simulate", False,
                              "Only measure block costs and simulate.")
_LINK = flags.DEFINE_string("link", "pcie4",
                            "Link of the simulation: nvlink, pcie4, 10gbe "
                            "or bytes/s.")
_STEPS_PER_EPOCH = flags.DEFINE_integer(
    "steps_per_epoch", 1875, "Steps per epoch of the simulation (fill and "
    "drain once per epoch); Fashion-MNIST at batch 32.")
_WORKER = flags.DEFINE_string("worker", None, "(internal) variant to run.")
_MODEL = flags.DEFINE_string("model", None, "(internal) model of the worker.")

BATCH = 32
# name -> (method, devices, intra_op, inter_op, pipeline)
VARIANTS = {
    "a": ("al", 1, 1, 1, False),
    "b": ("al", 2, 1, 2, False),
    "c": ("al", 2, 1, 2, True),
    "c4": ("al", 4, 1, 2, True),
    "d1": ("bp", 1, 1, 1, False),
    "d2": ("bp", 1, 2, 1, False),
}


def run_worker(variant, model_name, steps):
    """Times one variant in this process; prints one JSON line."""
    method, num_devices, intra, inter, pipeline = VARIANTS[variant]
    from al_keras import distribute

    # (One device for the serial variants: the CPU as it is.)
    devices = distribute.split_cpu(num_devices, threads_per_device=intra,
                                   concurrent_ops=inter)

    import keras
    import numpy as np

    import al_keras

    rng = np.random.default_rng(0)
    x = rng.random((BATCH * steps, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, BATCH * steps)
    strategy = None
    if num_devices > 1:
        strategy = distribute.BlockParallel(devices, pipeline=pipeline)
    with distribute.strategy_scope(strategy):
        model = al_keras.models.get(model_name, method=method,
                                    input_shape=(28, 28, 1), num_classes=10)
        model.compile(optimizer=keras.optimizers.Adam(1e-4),
                      metrics=["accuracy"], jit_compile=False)
    model.fit(x[:BATCH * 5], y[:BATCH * 5], batch_size=BATCH, epochs=1,
              verbose=0)
    timer = _step_timer()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[timer])
    result = {"steps_per_second": steps / timer.seconds}
    if strategy is not None:
        result["placement"] = strategy.placement
        result["block_profile"] = [vars(c) for c in strategy.block_profile]
    print("RESULT " + json.dumps(result), flush=True)


def _step_timer():
    """A callback timing from the first step's start to the last step's end.

    A pipelined model's drain runs within that span.  Not `fit`'s wall
    time: on this machine Keras often spends about a second after
    `on_train_end`, whatever the model.
    """
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds = time.perf_counter() - self.start

    return StepTimer()


def _spawn(variant, model_name, steps):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--worker={variant}",
         f"--model={model_name}", f"--steps={steps}"],
        capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"variant {variant} of {model_name} failed:\n"
                       f"{proc.stderr[-3000:]}")


def _variants_of(model_name):
    names = ["a", "b", "c", "d1", "d2"]
    if model_name == "cnn":  # Four blocks: a device each.
        names.insert(3, "c4")
    return names


def measure(models, steps, rounds):
    """Median steps/s per model and variant, and the block profiles."""
    speeds = {m: {v: [] for v in _variants_of(m)} for m in models}
    extra = {m: {} for m in models}
    for round_index in range(rounds):
        for model_name in models:
            for variant in _variants_of(model_name):
                result = _spawn(variant, model_name, steps)
                speeds[model_name][variant].append(result["steps_per_second"])
                if "placement" in result:
                    extra[model_name][variant] = result
                print(f"round {round_index + 1}/{rounds} {model_name:4s} "
                      f"{variant:3s} {result['steps_per_second']:7.2f} steps/s"
                      + (f"  placement {result['placement']}"
                         if "placement" in result else ""), flush=True)
    medians = {m: {v: statistics.median(s) for v, s in by_variant.items()}
               for m, by_variant in speeds.items()}
    return medians, speeds, extra


def ratios_of(medians):
    ratios = {}
    for model_name, m in medians.items():
        ratios[model_name] = {
            "pipelined_over_sequential": m["c"] / m["a"],
            "placed_over_sequential": m["b"] / m["a"],
            "pipelined_over_placed": m["c"] / m["b"],
            "bp_intra2_over_bp_intra1": m["d2"] / m["d1"],
            "pipelined_over_bp_intra2": m["c"] / m["d2"],
        }
        if "c4" in m:
            ratios[model_name]["pipelined4_over_sequential"] = m["c4"] / m["a"]
            ratios[model_name]["pipelined4_over_pipelined2"] = m["c4"] / m["c"]
    return ratios


def simulation_tables(profiles, link, steps_per_epoch):
    """Simulator tables for each measured model and an 8-block uniform one."""
    from al_keras.distribute import pipeline_simulator as sim

    link = sim.LINKS.get(link, link)
    link = float(link)
    out = []
    for model_name, profile in profiles.items():
        blocks = [sim.BlockCost(**c) for c in profile]
        out.append(f"\n{model_name}: {len(blocks)} blocks, measured "
                   f"(forward, rest of step) ms: "
                   + ", ".join(f"({b.forward * 1e3:.1f}, {b.backward * 1e3:.1f})"
                               for b in blocks))
        out.append(sim.simulate_table(blocks, link_bandwidth=link,
                                      steps_per_epoch=steps_per_epoch))
        def mean(f):
            return statistics.mean(getattr(b, f) for b in blocks)
        uniform = sim.uniform_blocks(
            8, mean("forward"), mean("backward"),
            activation_bytes=mean("activation_bytes"))
        out.append(f"\n{model_name}, deepened to 8 blocks of its mean block:")
        out.append(sim.simulate_table(uniform, link_bandwidth=link,
                                      steps_per_epoch=steps_per_epoch))
    return "\n".join(out)


def main(argv):
    del argv
    if _WORKER.value:
        run_worker(_WORKER.value, _MODEL.value, _STEPS.value)
        return
    if _SIMULATE.value:
        profiles = {m: _spawn("c4" if m == "cnn" else "c", m, 5)["block_profile"]
                    for m in _MODELS.value}
        print(simulation_tables(profiles, _LINK.value, _STEPS_PER_EPOCH.value))
        return
    medians, speeds, extra = measure(_MODELS.value, _STEPS.value, _ROUNDS.value)
    ratios = ratios_of(medians)
    print("\n| model | a: AL serial | b: AL placed, 2 dev | c: AL pipelined, "
          "2 dev | c4: AL pipelined, 4 dev | d1: BP intra 1 | d2: BP intra 2 |")
    print("|---|---|---|---|---|---|---|")
    for model_name, m in medians.items():
        cells = [f"{m[v]:.2f}" if v in m else "-"
                 for v in ("a", "b", "c", "c4", "d1", "d2")]
        print(f"| {model_name} | " + " | ".join(cells) + " |")
    print("(steps/s, median of the rounds; batch 32)\n")
    for model_name, r in ratios.items():
        print(f"{model_name}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
    profiles = {m: (extra[m].get("c4") or extra[m]["c"])["block_profile"]
                for m in medians}
    print(simulation_tables(profiles, _LINK.value, _STEPS_PER_EPOCH.value))
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"ratios": ratios, "steps_per_second": speeds,
                       "placements": {m: {v: e["placement"]
                                          for v, e in extra[m].items()}
                                      for m in extra},
                       "block_profiles": profiles}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
