"""RayPipeline: pipeline stages as Ray actor processes (al_keras.distribute).

Real Ray, real processes: a local Ray of 4 CPUs for the session (the stages
need not have a core each to be correct), and a two-node Ray cluster on
loopback in a process of its own.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import al_keras
from al_keras import distribute

ray = pytest.importorskip("ray")
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    yield
    ray.shutdown()


def _compiled(model):
    """`model` compiled as these tests train it: Adam(1e-3), accuracy, no XLA."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  jit_compile=False)
    return model


def _twins(mlp, strategy):
    """A sequential 3-block MLP and the same model (same weights) under `strategy`."""
    keras.utils.set_random_seed(7)
    sequential = _compiled(mlp(num_blocks=3))
    with strategy.scope():
        pipelined = _compiled(mlp(num_blocks=3))
    pipelined.set_weights(sequential.get_weights())
    return sequential, pipelined


class _Logs(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.batches, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


@pytest.mark.slow
def test_ray_pipelined_fit_equals_sequential_fit(local_ray, digits, tmp_path, mlp):
    """3 stages, 3 epochs of 1,438 examples in batches of 64 (the last of 30):
    the same weights, optimizer states and losses as sequential AL, every
    example trained by every block exactly once an epoch."""
    (x, y), (x_test, y_test) = digits
    strategy = distribute.RayPipeline(num_stages=3, jit_compile=False)
    sequential, pipelined = _twins(mlp, strategy)
    expected = sequential.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0)
    logs = _Logs()
    got = pipelined.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0,
                        validation_data=(x_test, y_test), callbacks=[logs])
    assert strategy.stage_blocks == [[0], [1], [2]]
    assert len({pid for _, pid, _ in strategy.stage_hosts}) == 3  # three processes
    assert re.search(r"; on this process's Ray at \S+: 1 node, 4 CPUs, 0 GPUs$",
                     strategy.describe()), strategy.describe()
    for a, b in zip(sequential.weights, pipelined.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    for a, b in zip(sequential.ae_optimizers + sequential.assoc_optimizers,
                    pipelined.ae_optimizers + pipelined.assoc_optimizers):
        for va, vb in zip(a.variables, b.variables):
            np.testing.assert_allclose(va.numpy(), vb.numpy(), atol=1e-5)
    for key in ("loss", "assoc_loss_1", "assoc_loss_3", "ae_loss_2"):
        np.testing.assert_allclose(got.history[key], expected.history[key], rtol=1e-5)
    assert strategy.examples_trained() == [3 * len(x)] * 3
    assert int(pipelined.optimizer.iterations) == 3 * 23
    # Callbacks see the per-block losses every batch, validation every epoch.
    assert {"assoc_loss_1", "ae_loss_3", "loss"} <= logs.batches[0].keys()
    assert len(logs.batches) == 3 * 23 and "val_accuracy" in logs.epochs[-1]
    assert logs.epochs[-1]["val_accuracy"] == pytest.approx(
        sequential.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])
    assert all(0 < busy <= 1 for busy in strategy.stage_busy)

    # The .keras file of a Ray run loads and predicts in a process without Ray.
    path = tmp_path / "ray_run.keras"
    pipelined.save(path)
    np.save(tmp_path / "x.npy", x_test[:20])
    script = ("import sys; sys.modules['ray'] = None\n"
              "import keras, numpy as np, al_keras\n"
              f"m = keras.models.load_model({str(path)!r})\n"
              f"np.save({str(tmp_path / 'p.npy')!r}, m.predict(np.load("
              f"{str(tmp_path / 'x.npy')!r}), verbose=0))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"),
                               pipelined.predict(x_test[:20], verbose=0), atol=1e-6)
    strategy.shutdown()


@pytest.mark.slow
def test_a_text_model_on_ray_stages_trains_as_sequential_al(local_ray):
    """A Transformer text model (token ids, padding mask in s_i) on 2 stages:
    the weights of sequential AL after 2 epochs."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20, (64, 6)).astype("int32")
    x[:, 3:][rng.random((64, 3)) < 0.5] = 0
    y = rng.integers(0, 3, 64)

    def make():
        keras.utils.set_random_seed(5)
        model = al_keras.models.get("transformer", sequence_length=6, num_classes=3,
                                    vocab_size=20, embedding_dim=8, num_heads=2,
                                    intermediate_dim=16, label_units=8)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
        return model

    strategy = distribute.RayPipeline(num_stages=2, jit_compile=False)
    sequential = make()
    with strategy.scope():
        pipelined = make()
    pipelined.set_weights(sequential.get_weights())
    for model in (sequential, pipelined):
        model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    assert strategy.examples_trained() == [2 * 64] * 3
    for a, b in zip(sequential.weights, pipelined.weights):
        if "key" in a.path and "bias" in a.path:
            continue  # A zero gradient but for rounding: see test_text.py.
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    strategy.shutdown()


@pytest.mark.slow
def test_batches_per_call_and_training_accuracy(local_ray, digits, mlp):
    """`steps_per_execution=4`: each stage trains 4 batches per Ray call, and
    the weights still equal sequential AL's; the training accuracy is logged,
    every example scored exactly once an epoch, and it is that of sequential
    AL but for decoders a few steps newer."""
    (x, y), _ = digits
    strategy = distribute.RayPipeline(num_stages=2, jit_compile=False)
    keras.utils.set_random_seed(3)
    sequential = _compiled(mlp(num_blocks=2))
    with strategy.scope():
        pipelined = _compiled(mlp(num_blocks=2))
        pipelined.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                          steps_per_execution=4, jit_compile=False)
    pipelined.set_weights(sequential.get_weights())
    expected = sequential.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0)
    logs = _Logs()
    got = pipelined.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0,
                        callbacks=[logs])
    for a, b in zip(sequential.weights, pipelined.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    np.testing.assert_allclose(got.history["assoc_loss_2"], expected.history["assoc_loss_2"],
                               rtol=1e-5)
    assert int(pipelined.optimizer.iterations) == 2 * 23
    assert len(logs.batches) == 2 * 6  # 23 batches a call of 4: 4+4+4+4+4+3.
    assert "accuracy" in logs.batches[0]
    count, = [v for v in pipelined._compile_metrics.variables if v.name == "count"]
    assert float(count) == len(x)  # The last epoch's: each example once.
    np.testing.assert_allclose(got.history["accuracy"], expected.history["accuracy"],
                               atol=0.02)
    strategy.shutdown()


@pytest.mark.slow
def test_mixed_precision_on_ray_stages_trains_in_the_float32_band(local_ray, digits):
    """Each stage process computes in the policy's type (its blocks' layers
    carry it in the model config) and, for float16, keeps a loss scale of
    its own per block optimizer, which comes back to the driver's model."""
    from al_keras.training import train_lib

    (x, y), (x_test, y_test) = digits
    accuracy, first_loss = {}, {}
    # mixed_bfloat16 under placement: test_precision.py (BlockParallel, Mirrored);
    # here the policy whose loss scales must travel between the processes.
    for policy in ("float32", "mixed_float16"):
        keras.utils.set_random_seed(3)
        strategy = distribute.RayPipeline(num_stages=2)
        with strategy.scope(), train_lib.dtype_policy(policy):
            model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                        hidden_units=128, label_units=64)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        history = model.fit(x, y, batch_size=32, epochs=3, verbose=0).history
        strategy.shutdown()
        assert all(np.all(np.isfinite(v)) for v in history.values()), (policy, history)
        assert history["loss"][-1] < history["loss"][0], (policy, history["loss"])
        first_loss[policy] = history["loss"][0]
        accuracy[policy] = model.evaluate(x_test, y_test, verbose=0,
                                          return_dict=True)["accuracy"]
        optimizers = model.assoc_optimizers + model.ae_optimizers
        scaled = [isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers]
        assert all(scaled) if policy == "mixed_float16" else not any(scaled)
        if policy == "mixed_float16":
            assert len({id(o.dynamic_scale) for o in optimizers}) == 4
            assert all(float(o.dynamic_scale.numpy()) >= 1 for o in optimizers)
    # The stages computed in another type: the losses differ from float32's.
    assert first_loss["mixed_float16"] != first_loss["float32"]
    assert abs(accuracy["mixed_float16"] - accuracy["float32"]) <= 0.05, accuracy


class _KillStage(keras.callbacks.Callback):
    """SIGKILLs a stage's process at the end of batch `at_batch` of the first
    epoch; counts the batches and epochs fit gets through after that."""

    def __init__(self, strategy, stage, at_batch):
        super().__init__()
        self.strategy, self.stage, self.at_batch = strategy, stage, at_batch
        self.killed = False
        self.batches_after, self.epochs_begun = 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_begun += 1

    def on_train_batch_end(self, batch, logs=None):
        if self.killed:
            self.batches_after += 1
        elif batch == self.at_batch:
            os.kill(self.strategy.stage_hosts[self.stage][1], signal.SIGKILL)
            self.killed = True


@pytest.mark.slow
def test_a_killed_stage_stops_fit_naming_it(local_ray, digits, mlp):
    (x, y), _ = digits
    strategy = distribute.RayPipeline(num_stages=2, jit_compile=False)
    with strategy.scope():
        model = _compiled(mlp(num_blocks=2))
    kill = _KillStage(strategy, stage=1, at_batch=5)
    with pytest.raises(distribute.StageFailedError,
                       match=r"^Stage 1 \(blocks 2\) on \S+ \(pid \d+, Ray node "
                             r"[0-9a-f]{8}\) failed while "):
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[kill])
    # fit stops at the first step it submitted to the dead stage: only the
    # steps_ahead (2) steps in flight before the kill may still finish, in the
    # kill's epoch (45 batches); it does not train on without the stage.
    assert kill.killed and kill.epochs_begun == 1
    assert kill.batches_after <= strategy.steps_ahead == 2, kill.batches_after
    strategy.shutdown()


def test_more_stages_than_blocks_is_one_clear_error(local_ray, mlp):
    strategy = distribute.RayPipeline(num_stages=4)
    with pytest.raises(ValueError, match=r"^RayPipeline: num_stages=4 is more stages than "
                                         r"the model's 3 blocks .*give num_stages <= 3\.$"):
        with strategy.scope():
            _compiled(mlp(num_blocks=3))


def test_resources_the_cluster_lacks_are_one_clear_error(local_ray, mlp):
    strategy = distribute.RayPipeline(num_stages=2, cpus_per_stage=8)
    with pytest.raises(ValueError, match=r"^RayPipeline: 2 stages of 8 CPUs need 16 CPUs, "
                                         r"but the Ray cluster has 4; lower num_stages or "
                                         r"cpus_per_stage\.$"):
        with strategy.scope():
            _compiled(mlp(num_blocks=2))


@pytest.mark.slow
def test_an_unreachable_ray_address_is_one_line(tmp_path, train_py):
    # (A run that hung on connecting would raise at the subprocess timeout.)
    status, last_line = train_py.refusal(
        "--config.distribute=ray", "--config.ray_address=127.0.0.1:1",
        f"--workdir={tmp_path / 'run'}", timeout=180)
    assert status == 1
    assert last_line.startswith("train.py: config.distribute='ray': RayPipeline: cannot "
                                "reach a Ray cluster at '127.0.0.1:1'")
    assert not (tmp_path / "run").exists()


def _script_result(script, tmp_path, *args):
    """Runs tests/`script` OUTPUT.json *args in a process of its own; its JSON."""
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, os.path.join(HERE, script), str(out), *args],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_node_cluster_on_loopback_trains_with_a_stage_on_each_node(tmp_path):
    result = _script_result("ray_two_nodes.py", tmp_path)
    assert len(set(result["stage_nodes"])) == 2  # one stage on each node
    assert result["examples_trained"] == [2 * result["num_train"]] * 2
    assert result["val_accuracy"] > 0.3  # chance: 0.1
    # Which cluster was joined is said, not silent (as for ray_address=auto).
    assert re.search(r"; joined the Ray cluster of address='\S+' at \S+: 2 nodes, 2 CPUs, "
                     r"0 GPUs$", result["describe"]), result["describe"]


@pytest.mark.slow
def test_a_node_that_leaves_stops_fit_naming_its_stage_and_loses_nothing(tmp_path):
    result = _script_result("ray_two_nodes.py", tmp_path, "leave")
    stage = result["stage_nodes"].index(result["worker_node"])
    assert re.match(rf"Stage {stage} \(blocks {stage + 1}\) on \S+ \(pid \d+, Ray node "
                    r"[0-9a-f]{8}\) failed while ", result["error"] or ""), result
    assert "\n" not in result["error"]
    assert result["checkpoint_max_difference"] < 1e-6  # epoch 1 is intact.


@pytest.mark.slow
def test_a_stage_out_of_memory_stops_fit_in_one_line_and_loses_nothing(tmp_path):
    result = _script_result("ray_stage_oom.py", tmp_path)
    assert re.match(r"Stage [01] \(blocks [12]\) on \S+ \(pid \d+, Ray node [0-9a-f]{8}\) "
                    r"failed while training: out of memory: Ray's memory monitor killed it "
                    r"\(the node used [\d.]+GB of [\d.]+GB", result["error"] or ""), result
    assert "\n" not in result["error"]
    assert result["model_unchanged"]  # The driver's model is the one before the fit.


def _ray_run(workdir):
    """train.py's arguments for a 3-epoch digits run on Ray stages in `workdir`."""
    return ["--config.distribute=ray", "--config.epochs=3", "--config.eval_exits=false",
            "--config.export=false", f"--workdir={workdir}"]


@pytest.mark.slow
def test_train_py_stage_killed_then_rerun_resumes_with_nothing_lost(tmp_path, train_py):
    """SIGKILL of stage 1 as epoch 2 starts: train.py stops with one line
    naming the stage; the rerun resumes from the last finished epoch (1, or 2
    on a machine so loaded that epoch 2 ended first) and ends with the
    metrics of a run never interrupted."""
    unbuffered = {"PYTHONUNBUFFERED": "1"}
    whole = train_py.run(*_ray_run(tmp_path / "whole"), env=unbuffered, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    workdir = tmp_path / "killed"
    run = subprocess.Popen(train_py.command(*_ray_run(workdir)), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           env=train_py.env(**unbuffered))
    pids, killed = None, False
    for line in run.stdout:
        if pids is None and line.startswith("RayPipeline stages started"):
            pids = [int(p) for p in re.findall(r"pid (\d+)", line)]
        if pids and not killed and "Epoch 2/3" in line:
            os.kill(pids[1], signal.SIGKILL)
            killed = True
    stderr = run.stderr.read()
    assert run.wait(timeout=120) == 1 and killed, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: Stage 1 (blocks 2) on ") and "failed while" in last
    assert "Traceback" not in stderr

    rerun = train_py.run(*_ray_run(workdir), env=unbuffered, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = re.search(r"Resuming from \S+epoch_000(\d)\.keras \(epoch (\d) finished\)",
                        rerun.stdout)
    assert resumed and resumed.group(1) == resumed.group(2) in ("1", "2"), rerun.stdout
    finished = int(resumed.group(1))
    whole_metrics = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    got = (workdir / "metrics.csv").read_text().splitlines()
    assert len(got) == 4 and got[0] == whole_metrics[0]
    for row_a, row_b in zip(got[1:], whole_metrics[1:]):
        np.testing.assert_allclose([float(v) for v in row_a.split(",")],
                                   [float(v) for v in row_b.split(",")], rtol=1e-5)
    results = json.loads((workdir / "results.json").read_text())
    # This process trained the epochs after the checkpoint, every block all of them.
    assert results["examples_trained_per_block"] == [(3 - finished) * 1438] * 2


@pytest.mark.slow
def test_without_ray_distribute_ray_says_how_to_install_it(tmp_path, train_py):
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    status, last_line = train_py.refusal(
        "--config.distribute=ray", f"--workdir={tmp_path / 'run'}",
        env={"PYTHONPATH": str(fake.parent)})
    assert status == 1
    assert last_line == (
        "train.py: config.distribute='ray': distribute=ray needs Ray, which is not "
        "installed: pip install -e \".[ray]\" (or pip install 'ray==2.60.0').")


@pytest.mark.slow
def test_ctrl_c_on_the_driver_leaves_no_stage_process(tmp_path, train_py):
    # SIGINT as in a terminal: a child inherits an ignored SIGINT from its parent
    # (pytest, after the tests above, may hold it so), and then never sees Ctrl-C.
    run = subprocess.Popen(train_py.command(*_ray_run(tmp_path / "run")),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=train_py.env(PYTHONUNBUFFERED="1"),
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pids = None
    for line in run.stdout:
        if line.startswith("RayPipeline stages started"):
            pids = [int(p) for p in re.findall(r"pid (\d+)", line)]
            time.sleep(1.0)
            run.send_signal(signal.SIGINT)
            break
    run.stdout.read()
    stderr = run.stderr.read()
    assert pids and run.wait(timeout=120) == 130, stderr[-3000:]
    assert "train.py: interrupted with" in stderr
    deadline = time.time() + 30
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.5)
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")], "stages left behind"
