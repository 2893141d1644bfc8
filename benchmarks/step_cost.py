"""Cost of one training step, AL against its BP twin: time, FLOPs, efficiency.

    python benchmarks/step_cost.py --json=/tmp/step_cost.json
    python benchmarks/step_cost.py --models=cnn --bridge=light --batch_sizes=32

For each zoo model, with the options and input shape of its config (MLP
and CNN: configs/fashion_mnist.py, 28x28x1; VGG and ResNet-20:
configs/cifar10.py, 32x32x3; 10 classes) on random data, at the config's
batch (32) and a larger one (128), in this one process:

* both models are compiled as `train.py` compiles them (Adam, XLA unless
  `--nojit_compile`) and warmed up;
* then `--repeats` rounds time `--steps` training steps of AL, then of BP,
  alternating, by calling Keras' compiled train function on a batch held
  in memory (no input pipeline); the median round gives seconds per step;
* FLOPs of one training step of each are counted by the TF profiler on
  the traced step's graph (the float operations of its matmuls,
  convolutions and their gradients, element-wise ops, optimizer updates),
  over the ops that run (not those the graph prunes).

Printed per model and batch: AL/BP step time, AL/BP FLOPs, and the
efficiency `(AL FLOP/s) / (BP FLOP/s)` = FLOP ratio / time ratio: 1.0 means
AL does its arithmetic as fast as BP does; below 1, AL wastes time on
something other than arithmetic (per-op overhead, small kernels).
`--json PATH` writes the rows, each with `al_over_bp_time`,
`al_over_bp_flops` and `efficiency`.

`--profile` adds, under each row, each AL block's local step timed and
counted alone (its weights: encoder f, bridge b): the blocks whose GFLOP/s
fall behind are where AL's time goes.

`--bridge=light` uses the light-bridge setting of the configs
(`config_lib.LIGHT_BRIDGE`) for both methods (the BP head mirrors the last
bridge).
"""

import json
import os
import statistics
import time

from absl import app, flags

import step_timing

_MODELS = flags.DEFINE_list("models", ["mlp", "cnn", "vgg", "resnet20"],
                            "Zoo models to measure.")
_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", ["config", "128"],
    "Batch sizes: 'config' (the config's) and/or integers.")
_BRIDGE = flags.DEFINE_enum("bridge", "original", ["original", "light"],
                            "Bridge setting of both methods.")
_JIT = flags.DEFINE_bool("jit_compile", True, "Compile the steps with XLA.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds per model.")
_SECONDS = flags.DEFINE_float("round_seconds", 0.5,
                              "Aim of each round's length (sets its steps).")
_OPTIONS = flags.DEFINE_list(
    "options", [], "Model options for both methods, key=value (ints or "
    "floats), e.g. label_units=256.")
_JSON = flags.DEFINE_string("json", None, "Write the rows to this file.")
_PROFILE = flags.DEFINE_bool(
    "profile", False, "Also time and count each AL block's local step alone "
    "(both losses, both updates) at each batch: where AL's time goes.")

_CONFIG_OF_MODEL = {"mlp": "fashion_mnist", "cnn": "fashion_mnist",
                    "vgg": "cifar10", "resnet20": "cifar10",
                    "resnet32": "cifar10"}
_SHAPE_OF_DATASET = {"fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def config_of(model, method, bridge="original", options=()):
    """The config of `model` and `method` (its dataset's), light if asked,
    with `options` ("key=value") set in its model options."""
    from al_keras.training import config_lib

    path = os.path.join(os.path.dirname(__file__), "..", "configs",
                        f"{_CONFIG_OF_MODEL[model]}.py")
    arg = f"model={model},method={method}"
    if bridge == "light":
        arg += ",light"
    config = config_lib.load_config_module(path).get_config(arg)
    for option in options:
        key, _, value = option.partition("=")
        config.model_options[key] = type(config.model_options[key])(float(value))
    return config


def build(config, batch_size, jit_compile):
    """The compiled model of `config` and one random batch of its shape."""
    import keras
    import numpy as np

    import al_keras

    shape = _SHAPE_OF_DATASET[config.dataset]
    model = al_keras.models.get(config.model, method=config.method,
                                input_shape=shape, num_classes=10,
                                **config.model_options.to_dict())
    model.compile(optimizer=keras.optimizers.Adam(config.lr),
                  metrics=["accuracy"], jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size,) + shape, dtype=np.float32)
    y = rng.integers(0, 10, batch_size).astype("int32")
    return model, x, y


def count_flops(model, x, y):
    """Float operations of one training step, by the TF profiler."""
    import tensorflow as tf

    step = tf.function(lambda x, y: model.train_step((x, y)))
    return graph_flops(step.get_concrete_function(
        tf.TensorSpec(x.shape, x.dtype), tf.TensorSpec(y.shape, y.dtype)).graph)


def graph_flops(graph):
    """Float operations of the ops of a traced graph that run, by the TF profiler.

    Ops nothing depends on are left out: gradient functions make some (e.g.
    the gradient of each AL block's first layer towards its stop-gradient
    input) that are pruned when the graph runs.
    """
    import tensorflow as tf

    options = (tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
        .with_empty_output().build())
    tree = tf.compat.v1.profiler.profile(graph, cmd="scope", options=options)
    live = _live_ops(graph)
    total, stack = 0, list(tree.children)
    while stack:
        node = stack.pop()
        if node.name in live:
            total += node.float_ops
        stack.extend(node.children)
    return total


def _live_ops(graph):
    """Names of the ops the graph's outputs and side effects depend on."""
    roots = [t.op for t in graph.outputs] + list(graph.control_outputs)
    live, stack = set(), roots
    while stack:
        op = stack.pop()
        if op.name in live:
            continue
        live.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return live


def measure(model_name, batch, bridge, jit_compile, repeats, round_seconds,
            profile=False):
    """One row: AL and BP of `model_name` at `batch`, alternating."""
    import keras

    keras.backend.clear_session(free_memory=True)  # The last row's models.
    timers, flops, batch_size, blocks = {}, {}, None, None
    for method in ("al", "bp"):
        config = config_of(model_name, method, bridge, _OPTIONS.value)
        batch_size = config.batch_size if batch == "config" else int(batch)
        model, x, y = build(config, batch_size, jit_compile)
        flops[method] = count_flops(model, x, y)
        if method == "al" and profile:
            blocks = block_profile(model, x, y, jit_compile, round_seconds)
        timers[method] = step_timing.step_timer(model, step_timing.one_batch(x, y))
        timers[method](3)  # Compiles; warms up.
    steps = {m: max(2, round(round_seconds / run(2)))
             for m, run in timers.items()}
    seconds = {m: [] for m in timers}
    for _ in range(repeats):
        for method, run in timers.items():
            seconds[method].append(run(steps[method]))
    al, bp = (statistics.median(seconds[m]) for m in ("al", "bp"))
    time_ratio = al / bp
    flop_ratio = flops["al"] / flops["bp"]
    return {
        "model": model_name, "batch_size": batch_size, "bridge": bridge,
        "options": list(_OPTIONS.value),
        "jit_compile": jit_compile,
        "al_ms_per_step": round(al * 1e3, 2), "bp_ms_per_step": round(bp * 1e3, 2),
        "al_gflops_per_step": round(flops["al"] / 1e9, 3),
        "bp_gflops_per_step": round(flops["bp"] / 1e9, 3),
        "al_gflop_per_s": round(flops["al"] / al / 1e9, 2),
        "bp_gflop_per_s": round(flops["bp"] / bp / 1e9, 2),
        "al_over_bp_time": round(time_ratio, 3),
        "al_over_bp_flops": round(flop_ratio, 3),
        "efficiency": round(flop_ratio / time_ratio, 3),
        "spread_al": round((max(seconds["al"]) - min(seconds["al"])) / al, 3),
        "spread_bp": round((max(seconds["bp"]) - min(seconds["bp"])) / bp, 3),
        **({"al_blocks": blocks} if blocks else {}),
    }


def block_profile(model, x, y, jit_compile, round_seconds):
    """Per AL block: weights, and time and FLOPs of its local step alone."""
    import numpy as np
    import tensorflow as tf

    from al_keras.core import labels

    s, t = tf.constant(x), labels.to_one_hot(tf.constant(y), model.num_classes)
    rows = []
    for index, block in enumerate(model.blocks):
        step = tf.function(lambda s, t, i=index: model.train_block(i, s, t, None)[:2],
                           jit_compile=jit_compile)
        flops = graph_flops(step.get_concrete_function(
            tf.TensorSpec(s.shape, s.dtype), tf.TensorSpec(t.shape, t.dtype)).graph)
        for _ in range(3):
            s_next, t_next = step(s, t)
        steps = max(3, round(round_seconds / 3 / _seconds(step, s, t, 1)))
        seconds = statistics.median(_seconds(step, s, t, steps) for _ in range(3))
        def count(variables):
            return int(sum(np.prod(v.shape) for v in variables))
        rows.append({
            "block": index + 1,
            "encoder_weights": count(block.encoder.trainable_variables),
            "bridge_weights": count(block.bridge.trainable_variables),
            "ms": round(seconds * 1e3, 2), "gflops": round(flops / 1e9, 3),
            "gflop_per_s": round(flops / seconds / 1e9, 1)})
        s, t = s_next, t_next
    return rows


def _seconds(function, s, t, steps):
    start = time.perf_counter()
    for _ in range(steps):
        out = function(s, t)
    float(out[0][0, ...].numpy().ravel()[0])
    return (time.perf_counter() - start) / steps


def main(argv):
    del argv
    rows = []
    print("| model | batch | AL ms/step | BP ms/step | AL/BP time | "
          "AL/BP FLOPs | AL GFLOP/s | BP GFLOP/s | efficiency |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in _MODELS.value:
        for batch in _BATCH_SIZES.value:
            row = measure(name, batch, _BRIDGE.value, _JIT.value,
                          _REPEATS.value, _SECONDS.value, _PROFILE.value)
            rows.append(row)
            print(f"| {name} | {row['batch_size']} | {row['al_ms_per_step']} | "
                  f"{row['bp_ms_per_step']} | {row['al_over_bp_time']:.2f} | "
                  f"{row['al_over_bp_flops']:.2f} | {row['al_gflop_per_s']} | "
                  f"{row['bp_gflop_per_s']} | {row['efficiency']:.2f} |",
                  flush=True)
            for block in row.get("al_blocks", []):
                print(f"|   AL block {block['block']} alone | | "
                      f"{block['ms']} | | | | {block['gflop_per_s']} | | "
                      f"f {block['encoder_weights']:,} / b "
                      f"{block['bridge_weights']:,} weights |", flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"bridge": _BRIDGE.value, "jit_compile": _JIT.value,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
