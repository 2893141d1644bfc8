"""Blocks on their own devices (BlockParallel, pipelined or not), and data
parallelism through tf.distribute (Mirrored, MultiWorkerMirrored).

conftest.py splits the CPU into 4 logical devices before any op runs.
"""

import json
import os
import re
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras import distribute
from al_keras.distribute import pipeline_simulator

HERE = os.path.dirname(os.path.abspath(__file__))


def _placed_mlp(mlp, devices, placement, pipeline=True, jit_compile=True, num_blocks=4,
                **options):
    """`mlp` (the conftest fixture) of `num_blocks` blocks, placed and compiled."""
    strategy = distribute.BlockParallel(devices, placement=placement,
                                        pipeline=pipeline, jit_compile=jit_compile)
    with strategy.scope():
        model = mlp(num_blocks=num_blocks, **options)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      metrics=["accuracy"])
    return strategy, model


def _device_index(name):
    return tf.DeviceSpec.from_string(name).device_index


# ---------------------------------------------------------------- placement
@pytest.mark.slow
def test_block_variables_and_optimizer_slots_live_on_their_device(
        digits, cpu_devices, mlp):
    (x, y), _ = digits
    strategy, model = _placed_mlp(mlp, cpu_devices, [0, 1, 2, 3])
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    assert strategy.placement == cpu_devices
    for i, block in enumerate(model.blocks):
        optimizer_variables = (model.assoc_optimizers[i].variables
                               + model.ae_optimizers[i].variables)
        # Adam: iterations, learning rate, and two slots per weight.
        assert len(optimizer_variables) == 4 + 2 * len(block.trainable_weights)
        for variable in block.weights + optimizer_variables:
            assert _device_index(variable.value.device) == i, variable.path
    for k, boundary in enumerate(strategy.placement_state(model).holder.boundaries):
        for buffer in boundary.values():
            assert _device_index(buffer.device) == k + 1


def _traced_step(model):
    step = tf.function(lambda x, y: model.executor.train_step(model, (x, y)))
    return step.get_concrete_function(
        tf.TensorSpec([None, 64]), tf.TensorSpec([None], tf.int32)
    ).graph.as_graph_def()


def _check_node(node, block_index):
    """A node of block i runs on device i, or is a variable read or a
    captured variable handle (which TF places where the variable is; the
    variables are checked above)."""
    if node.device:
        assert _device_index(node.device) == block_index, (node.name, node.device)
    else:
        assert node.op in ("ReadVariableOp", "Placeholder"), (node.name, node.op)


def _xla_calls(nodes):
    """The nodes of `nodes` that call a function XLA must compile."""
    return [n for n in nodes if n.op in ("PartitionedCall", "StatefulPartitionedCall")
            and n.attr["_XlaMustCompile"].b]


def _check_block_ops(nodes, functions, block_index, jit_compile):
    """`nodes` (of block i) run on device i; the block's forward and update
    ops are among them, or, compiled, in the one XLA function they call."""
    for node in nodes:
        _check_node(node, block_index)
    calls = _xla_calls(nodes)
    if jit_compile:
        assert len(calls) == 1, [n.name for n in calls]
        nodes = functions[calls[0].attr["f"].func.name].node_def
    else:
        assert not calls
    ops = {n.op for n in nodes}
    assert {"MatMul", "AssignSubVariableOp"} <= ops  # forward, update


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_pipelined_step_runs_each_blocks_ops_on_its_device(
        jit_compile, digits, cpu_devices, mlp):
    (x, y), _ = digits
    _, model = _placed_mlp(mlp, cpu_devices, [0, 1, 2, 3], jit_compile=jit_compile)
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    graph = _traced_step(model)
    # Each block's whole local step is a branch of its `block_<i>/cond`.
    functions = {f.signature.name: f for f in graph.library.function}
    conds = {}
    for node in graph.node:
        match = re.search(r"block_(\d+)/cond$", node.name)
        if match and node.op in ("If", "StatelessIf"):
            conds[int(match.group(1)) - 1] = node
    assert sorted(conds) == [0, 1, 2, 3]
    for block_index, node in conds.items():
        assert _device_index(node.device) == block_index
        train, idle = (functions[node.attr[k].func.name]
                       for k in ("then_branch", "else_branch"))
        _check_block_ops(train.node_def, functions, block_index, jit_compile)
        for function_node in idle.node_def:
            _check_node(function_node, block_index)


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_placed_sequential_step_runs_each_blocks_ops_on_its_device(
        jit_compile, digits, cpu_devices, mlp):
    (x, y), _ = digits
    _, model = _placed_mlp(mlp, cpu_devices, [0, 1, 2, 3], pipeline=False,
                           jit_compile=jit_compile)
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    graph = _traced_step(model)
    functions = {f.signature.name: f for f in graph.library.function}
    by_block = {}
    for node in graph.node:
        if node.name.startswith("block_"):
            block_index = int(node.name.split("/")[0].split("_")[1]) - 1
            by_block.setdefault(block_index, []).append(node)
    assert sorted(by_block) == [0, 1, 2, 3]
    for block_index, nodes in by_block.items():
        _check_block_ops(nodes, functions, block_index, jit_compile)
    # Outside the blocks nothing is compiled: the step itself is not XLA.
    assert not _xla_calls(n for n in graph.node if not n.name.startswith("block_"))


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", [False, True])
def test_compiled_placed_step_equals_the_uncompiled_one(pipeline, digits, cpu_devices, mlp):
    """Each block's step XLA-compiled for its own device (4 logical CPU
    devices) trains as the uncompiled placed step does."""
    (x, y), _ = digits
    runs = {}
    for jit_compile in (False, True):
        keras.utils.set_random_seed(7)
        _, model = _placed_mlp(mlp, cpu_devices, [0, 1, 2, 3], pipeline=pipeline,
                               jit_compile=jit_compile)
        assert model.executor.placement_state(model).jit_blocks is jit_compile
        assert model.jit_compile is False  # The step around the blocks.
        history = model.fit(x[:320], y[:320], batch_size=32, epochs=2,
                            shuffle=False, verbose=0).history
        runs[jit_compile] = history, [w.numpy() for w in model.weights]
    (plain, plain_weights), (compiled, compiled_weights) = runs[False], runs[True]
    for key in [k for k in plain if "loss" in k]:
        np.testing.assert_allclose(compiled[key], plain[key], atol=1e-4, err_msg=key)
    assert compiled["accuracy"] == pytest.approx(plain["accuracy"], abs=1e-6)
    for a, b in zip(plain_weights, compiled_weights):
        np.testing.assert_allclose(b, a, atol=1e-5)
    assert len(plain_weights) == len(compiled_weights) > 0


def test_auto_placement_balances_measured_block_costs(cpu_devices):
    # Block 1 (16M weights) costs far more than the three others together
    # (a few thousand weights each, dominated by per-call overhead, ~1-2 ms
    # for an XLA step on this CPU), with a margin of several times so that
    # a loaded machine does not flip it.
    # (predict=False: the prediction has tests of its own,
    # test_block_parallel_prediction.py; here it would double the time.)
    strategy = distribute.BlockParallel(cpu_devices[:2], predict=False)
    with strategy.scope():
        al_keras.associate(  # Built in the scope: placed by measured costs.
            [keras.layers.Dense(4096, "elu"), keras.layers.Dense(8, "elu"),
             keras.layers.Dense(8, "elu"), keras.layers.Dense(8, "elu")],
            num_classes=10, label_units=8, input_shape=(4096,))
    costs = strategy.block_costs
    assert len(costs) == 4 and all(c > 0 for c in costs)
    assert costs[0] > 2 * sum(costs[1:]), costs
    assert strategy.placement == [cpu_devices[0]] + [cpu_devices[1]] * 3
    assert strategy.placement == [
        cpu_devices[i]
        for i in pipeline_simulator.balanced_partition(costs, 2)]
    # s_i (float32) and t_i (8 float32) per example.
    assert strategy.activation_bytes == [4 * (4096 + 8)] + [4 * (8 + 8)] * 3


def test_placement_errors_name_the_problem(cpu_devices, mlp):
    with pytest.raises(ValueError, match="names devices \\[7\\]"):
        distribute.BlockParallel(cpu_devices, placement=[0, 7])
    strategy = distribute.BlockParallel(cpu_devices, placement=[0, 1])
    with pytest.raises(ValueError, match="2 entries but the model has 4"):
        with strategy.scope():
            mlp(num_blocks=4)
    with pytest.raises(ValueError, match="jit_compile must be True, False or 'auto'"):
        distribute.BlockParallel(cpu_devices, jit_compile="yes")
    strategy = distribute.BlockParallel(cpu_devices, placement=[0, 1])
    with strategy.scope():
        model = mlp(num_blocks=2)
        with pytest.raises(ValueError, match="jit_compile must be True, False or 'auto'"):
            model.compile(optimizer="adam", jit_compile=1)
    with tf.distribute.MirroredStrategy(cpu_devices[:2]).scope():
        with pytest.raises(ValueError, match="cannot be combined"):
            strategy.scope().__enter__()


# ----------------------------------------------------------------- pipeline
def test_blocks_compile_on_gpus_and_not_on_cpu_devices_by_default(cpu_devices, mlp):
    """XLA steps on CPU devices take turns; uncompiled they overlap and train
    faster (docs/several-devices.md), so "auto" compiles on GPUs only."""
    assert distribute.BlockParallel(cpu_devices[:2]).jit_compile is False
    assert distribute.BlockParallel(["/GPU:0", "/GPU:1"]).jit_compile is True
    assert distribute.BlockParallel(cpu_devices[:2], jit_compile=True).jit_compile is True
    strategy = distribute.BlockParallel(cpu_devices[:2], placement=[0, 1])
    with strategy.scope():
        model = mlp(num_blocks=2)
        model.compile(optimizer="adam")  # Keras' "auto": the strategy's.
        assert strategy.placement_state(model).jit_blocks is False
        model.compile(optimizer="adam", jit_compile=True)
        assert strategy.placement_state(model).jit_blocks is True
        assert model.get_compile_config()["jit_compile"] is True


def _one_fake_gpu(monkeypatch, memory_mb):
    """TensorFlow's device configuration as on a machine with one GPU of
    `memory_mb` MiB; returns the logical configurations set on it."""
    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    real_physical, made = tf.config.list_physical_devices, []

    def physical(kind=None):
        return [gpu] if kind == "GPU" else real_physical(kind)

    def logical(kind=None):
        assert kind == "GPU"
        return [tf.config.LogicalDevice(f"/device:GPU:{i}", "GPU")
                for i in range(len(made[-1]) if made else 1)]

    monkeypatch.setattr(tf.config, "list_physical_devices", physical)
    monkeypatch.setattr(tf.config, "list_logical_devices", logical)
    monkeypatch.setattr(tf.config, "get_logical_device_configuration",
                        lambda device: made[-1] if made else None)
    monkeypatch.setattr(tf.config, "set_logical_device_configuration",
                        lambda device, configs: made.append(list(configs)))
    monkeypatch.setattr(distribute.strategies, "gpu_memory_mb",
                        lambda index=0: memory_mb)
    return made


def test_num_devices_splits_one_gpu_into_logical_gpus(monkeypatch):
    made = _one_fake_gpu(monkeypatch, memory_mb=81559)
    strategy = distribute.make_strategy("blocks", num_devices=2)
    assert strategy.devices == ["/device:GPU:0", "/device:GPU:1"]
    # 90% of the GPU's memory, shared evenly.
    assert [c.memory_limit for c in made[0]] == [int(0.9 * 81559 / 2)] * 2
    # Already split: the same devices, configured once.
    assert distribute.split_gpu(2) == ["/device:GPU:0", "/device:GPU:1"]
    assert len(made) == 1
    distribute.split_gpu(3, memory_limit_mb=1000)
    assert [c.memory_limit for c in made[1]] == [1000] * 3


def test_one_gpu_stays_whole_without_num_devices(monkeypatch):
    made = _one_fake_gpu(monkeypatch, memory_mb=81559)
    assert distribute.make_strategy("blocks").devices == ["/device:GPU:0"]
    assert made == []


def test_split_gpu_without_its_memory_size_is_one_clear_error(monkeypatch):
    _one_fake_gpu(monkeypatch, memory_mb=None)
    with pytest.raises(RuntimeError, match="give memory_limit_mb"):
        distribute.split_gpu(2)


@pytest.mark.slow
def test_pipelined_fit_computes_what_sequential_fit_computes(digits, cpu_devices, mlp):
    (x, y), (x_test, y_test) = digits
    x, y = x[:1013], y[:1013]  # 31 batches of 32 and one of 21
    options = dict(num_blocks=4, hidden_units=64, label_units=32)
    sequential = mlp(**options)
    sequential.compile(optimizer=keras.optimizers.Adam(3e-3),
                       metrics=["accuracy"])
    strategy = distribute.BlockParallel(cpu_devices)
    with strategy.scope():
        pipelined = mlp(**options)
        pipelined.compile(optimizer=keras.optimizers.Adam(3e-3),
                          metrics=["accuracy"])
    pipelined.set_weights(sequential.get_weights())
    fits = [m.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
            for m in (sequential, pipelined)]

    assert strategy.examples_trained() == [3 * 1013] * 4
    assert int(pipelined.optimizer.iterations) == 3 * 32
    for a, b in zip(sequential.get_weights(), pipelined.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for key in ("loss", "assoc_loss_4", "ae_loss_4", "assoc_loss_1"):
        np.testing.assert_allclose(fits[0].history[key], fits[1].history[key],
                                   rtol=1e-4)
    accuracies = {
        exit: [m.evaluate(x_test, y_test, exit=exit, verbose=0,
                          return_dict=True)["accuracy"]
               for m in (sequential, pipelined)]
        for exit in (1, 4)}
    for sequential_accuracy, pipelined_accuracy in accuracies.values():
        assert abs(sequential_accuracy - pipelined_accuracy) <= 0.01
    assert accuracies[1][1] > 0.5  # Exit 1 learned in these 96 steps.


@keras.saving.register_keras_serializable(package="al_keras_tests")
class CountingDense(keras.layers.Layer):
    """Dense on all but column 0 (an example id), which it passes on; counts
    in `counts[id]` how often it trained on each example."""

    def __init__(self, units, num_examples, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_examples = num_examples
        self.dense = keras.layers.Dense(units, activation="elu")

    def build(self, input_shape):
        self.dense.build((None, input_shape[-1] - 1))
        self.counts = self.add_weight(shape=(self.num_examples,),
                                      initializer="zeros", trainable=False)

    def call(self, inputs, training=False):
        ids = inputs[:, :1]
        if training:
            # (Not tf.math.bincount: XLA recompiles it for every batch.)
            self.counts.assign_add(tf.reduce_sum(tf.one_hot(
                tf.cast(ids[:, 0], "int32"), self.num_examples), axis=0))
        return tf.concat([ids, self.dense(inputs[:, 1:])], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units + 1)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "num_examples": self.num_examples}


@pytest.mark.slow
def test_pipeline_trains_every_example_in_every_block_once_per_epoch(
        digits, cpu_devices):
    (x, y), _ = digits
    n = 1013
    ids = np.arange(n, dtype="float32")[:, None]
    x = np.concatenate([ids, x[:n]], axis=1)
    strategy = distribute.BlockParallel(cpu_devices, placement=[0, 1, 2, 3])
    with strategy.scope():
        model = al_keras.associate(
            [CountingDense(32, n) for _ in range(4)], num_classes=10,
            label_units=16, input_shape=(65,))
        model.compile(optimizer="adam")

    for epochs in (1, 3):  # After one epoch and after a whole fit.
        model.fit(x, y[:n], batch_size=64, epochs=1 if epochs == 1 else 2,
                  shuffle=True, verbose=0)
        for block in model.blocks:
            np.testing.assert_array_equal(block.encoder.counts.numpy(),
                                          np.full(n, epochs))
    assert strategy.examples_trained() == [3 * n] * 4


@pytest.mark.slow
def test_pipeline_drains_when_training_stops_early(digits, cpu_devices, mlp):
    (x, y), _ = digits
    strategy, model = _placed_mlp(mlp, cpu_devices, [0, 1, 2, 3])

    class StopAfterThreeBatches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    model.fit(x[:640], y[:640], batch_size=64, epochs=5, verbose=0,
              callbacks=[StopAfterThreeBatches()])
    assert strategy.examples_trained() == [3 * 64] * 4


# ------------------------------------------------------------ tf.distribute
@pytest.mark.slow
def test_mirrored_step_equals_single_device_step(digits, cpu_devices, mlp):
    (x, y), _ = digits
    x, y = x[:64], y[:64]

    def make():
        model = mlp(num_blocks=2, hidden_units=64, label_units=32)
        model.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
        return model

    single = make()
    initial = single.get_weights()
    strategy = tf.distribute.MirroredStrategy(cpu_devices[:2])
    with strategy.scope():
        mirrored = make()
    mirrored.set_weights(initial)
    logs = [m.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
            .history for m in (single, mirrored)]

    assert strategy.num_replicas_in_sync == 2
    moved = max(np.abs(a - b).max()
                for a, b in zip(initial, single.get_weights()))
    assert moved > 1e-3  # The step did something measurable.
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for key in ("loss", "assoc_loss_1", "ae_loss_2", "accuracy"):
        np.testing.assert_allclose(logs[0][key], logs[1][key], rtol=1e-5)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_two_local_workers_agree(tmp_path):
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(HERE, "multi_worker_job.py"),
             str(tmp_path / f"worker_{index}.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=240)[0])
        finally:
            proc.kill()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
    results = [np.load(tmp_path / f"worker_{i}.npz") for i in range(2)]
    assert int(results[0]["replicas"]) == 2
    weights = [[r[f"arr_{i}"] for i in range(len(r.files) - 3)]
               for r in results]
    assert len(weights[0]) > 0
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results[0]["loss"], results[1]["loss"])
    np.testing.assert_array_equal(results[0]["val_accuracy"],
                                  results[1]["val_accuracy"])
    assert results[0]["loss"][1] < results[0]["loss"][0]  # It trained.


# ------------------------------------------------------------------- saving
@pytest.mark.slow
def test_placed_model_saved_as_keras_predicts_the_same_on_one_device(
        digits, cpu_devices, tmp_path, mlp):
    (x, y), (x_test, _) = digits
    _, model = _placed_mlp(mlp, cpu_devices, [0, 1, 2, 3])
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    path = tmp_path / "placed.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x_test[:50])
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "predict_on_one_device.py"),
         str(path), str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert int(out["num_cpu_devices"]) == 1
    assert [_device_index(d) for d in out["devices"]] == [0]
    np.testing.assert_allclose(out["predictions"],
                               model.predict(x_test[:50], verbose=0),
                               rtol=1e-5, atol=1e-6)
