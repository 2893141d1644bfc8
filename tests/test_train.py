"""train.py / train_and_evaluate end to end on the embedded digits."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras.training import runs, train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_train_and_evaluate_writes_every_output(tmp_path, digits_config):
    workdir = str(tmp_path / "run")
    # 300 held out: with them a drop of 3 points can be vouched for (half a
    # point cannot: the bound keeps the full path).
    results = train_lib.train_and_evaluate(
        digits_config(validation_examples=300, max_exit_accuracy_drop=0.03), workdir,
        verbose=0)
    assert results["test_accuracy"] >= 0.95 and results["num_train"] == 1438 - 300
    for name in ("config.json", "metrics.csv", "results.json", "curves.png",
                 "saved_model/saved_model.pb", "checkpoints"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert [e for e, _ in train_lib.checkpoints(os.path.join(workdir, "checkpoints"))] == [14, 15]
    saved = json.load(open(os.path.join(workdir, "results.json")))
    for key in ("method", "dataset", "model", "epochs", "test_accuracy",
                "exit_test_accuracy", "train_seconds", "examples_per_second", "params"):
        assert key in saved, key
    assert saved["epochs"] == 15 and len(saved["exit_test_accuracy"]) == 2
    rows = runs.read_metrics(workdir)
    assert [r["epoch"] for r in rows] == list(range(15))
    assert {"assoc_loss_1", "ae_loss_2", "val_accuracy", "val_exit_1_accuracy",
            "val_exit_2_accuracy", "epoch_seconds"} <= rows[0].keys()
    assert rows[-1]["val_accuracy"] == pytest.approx(saved["test_accuracy"], abs=1e-6)
    # The adaptive exit, calibrated on the held-out examples, and in the export.
    adaptive = saved["adaptive_exit"]
    assert adaptive["num_examples"] == 300 and adaptive["confidence"] == "max_prob"
    assert 0 <= adaptive["threshold"] <= 1 and adaptive["flops_saved"] > 0
    assert adaptive["accuracy"] >= adaptive["full_accuracy"] - 0.03
    assert adaptive["test"]["full_accuracy"] == pytest.approx(saved["test_accuracy"])
    assert 0 < adaptive["flops_per_example"] <= adaptive["full_flops"]
    served = tf.saved_model.load(os.path.join(workdir, "saved_model")).signatures
    x = tf.random.stateless_uniform((16, 8, 8, 1), seed=(1, 2))
    np.testing.assert_array_equal(
        served["adaptive"](inputs=x)["exit"],
        served["adaptive_threshold"](inputs=x, threshold=tf.constant(
            adaptive["threshold"], tf.float32))["exit"])
    tb_files = [f for _, _, fs in os.walk(os.path.join(workdir, "tensorboard")) for f in fs]
    assert any(f.startswith("events.out.tfevents") for f in tb_files)

    # The report over this run and a BP run.
    bp_dir = str(tmp_path / "bp")
    train_lib.train_and_evaluate(digits_config("method=bp", epochs=3), bp_dir, verbose=0)
    table = runs.markdown_table([runs.load_run(workdir), runs.load_run(bp_dir)])
    assert table.count("\n") == 3 and "| run | al | digits | mlp | 15 |" in table
    out = tmp_path / "report.png"
    proc = subprocess.run([sys.executable, "-m", "al_keras.training.report", workdir, bp_dir,
                           f"--output={out}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| bp | digits | mlp | 3 |" in proc.stdout and out.stat().st_size > 10_000
    # The adaptive exit's column: test accuracy and FLOPs saved.
    assert f"| {adaptive['test']['accuracy']:.4f}, {adaptive['test']['flops_saved']:.1%} |" \
        in proc.stdout


@pytest.mark.slow
def test_a_workdir_of_another_config_is_refused(tmp_path, digits_config):
    workdir = str(tmp_path / "run")
    train_lib.train_and_evaluate(digits_config(epochs=1, export=False), workdir, verbose=0)
    with pytest.raises(ValueError, match=r"another config \(differing keys: \['lr'\]\)"):
        train_lib.train_and_evaluate(digits_config(epochs=1, export=False, lr=0.5),
                                      workdir, verbose=0)


@pytest.mark.slow
def test_ctrl_c_stops_train_py_with_one_line_and_it_resumes(tmp_path):
    # SIGKILL at random moments: test_resume.py.
    workdir = tmp_path / "run"
    command = [sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}",
               "--config.epochs=4", "--config.export=false"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    # A shell's background job ignores SIGINT; a terminal's Ctrl-C does not.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=str(tmp_path), text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = workdir / "checkpoints" / "epoch_0001.keras"
    deadline = time.time() + 120
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert first.exists(), proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGINT)  # A real interruption, mid-training.
    _, stderr = proc.communicate(timeout=120)
    done = [e for e, _ in train_lib.checkpoints(str(workdir / "checkpoints"))]
    assert done and max(done) < 4
    assert proc.returncode == 130
    assert stderr.splitlines()[-1] == (
        f"train.py: interrupted with {max(done)} epoch(s) saved in {workdir}; "
        "rerun the same command to continue.")
    assert "Traceback" not in stderr

    rerun = subprocess.run(command, capture_output=True, text=True, env=env,
                           cwd=str(tmp_path), timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"(epoch {max(done)} finished)" in rerun.stdout
    with open(workdir / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2, 3]
    model = keras.models.load_model(workdir / "checkpoints" / "epoch_0004.keras")
    assert int(model.optimizer.iterations) == 4 * 45
    assert [int(o.iterations) for o in model.assoc_optimizers] == [180, 180]


@pytest.mark.slow
def test_distributed_runs_train_to_the_accuracy_of_a_single_device_run(tmp_path, digits_config):
    # conftest.py has split the CPU into 4 devices; 2 are used.
    config = dict(jit_compile=False, num_devices=2, export=False)  # 15 epochs
    single = train_lib.train_and_evaluate(
        digits_config(**config), str(tmp_path / "none"), verbose=0)
    blocks = train_lib.train_and_evaluate(
        digits_config(distribute="blocks", placement="0,1", **config),
        str(tmp_path / "blocks"), verbose=0)
    mirrored = train_lib.train_and_evaluate(
        digits_config(distribute="mirrored", **config),
        str(tmp_path / "mirrored"), verbose=0)
    assert blocks["placement"] == ["/device:CPU:0", "/device:CPU:1"]
    assert blocks["examples_trained_per_block"] == [15 * single["num_train"]] * 2
    assert mirrored["replicas"] == 2
    # The pipelined blocks make the sequential run's updates.
    assert blocks["test_accuracy"] == pytest.approx(single["test_accuracy"], abs=0.003)
    assert mirrored["test_accuracy"] == pytest.approx(single["test_accuracy"], abs=0.01)
    assert single["test_accuracy"] > 0.95


def test_switching_method_without_the_argument_is_explained(digits_config):
    config = digits_config(method="bp")
    with pytest.raises(ValueError, match="Unknown option.*configs/digits.py:model=cnn,method=bp"):
        train_lib.train_and_evaluate(config, "/nonexistent/never/created")


def test_every_model_option_is_a_config_key_and_overridable(digits_config):
    config = digits_config()
    options = config.model_options
    assert set(options) == set(al_keras.models.check_options("mlp", "al", {}))
    assert options.kernel_regularizer is None
    options.kernel_regularizer = 1e-4  # a typed placeholder takes a float
    options.bridge_multiplier = 2.5
    al_keras.training.config_lib.validate(config)


def test_truncate_metrics_and_checkpoint_listing(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,loss\n0,1.0\n1,0.5\n2,0.25\n")
    runs.truncate_metrics(str(tmp_path), 2)
    assert [r["epoch"] for r in runs.read_metrics(str(tmp_path))] == [0, 1]
    runs.truncate_metrics(str(tmp_path), 0)
    assert runs.read_metrics(str(tmp_path)) == []
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    for name in ("epoch_0002.keras", "epoch_0010.keras", "partial-epoch_0011.keras",
                 "notes.txt"):
        (ckpt / name).write_text("x")
    assert [e for e, _ in train_lib.checkpoints(str(ckpt))] == [2, 10]


@pytest.mark.parametrize("jit", [True, False])
def test_jit_compile_key_reaches_compile(jit, digits_config):
    config = digits_config(jit_compile=jit)
    model = al_keras.models.get("mlp", input_shape=(8, 8, 1), num_classes=10,
                                **config.model_options.to_dict())
    train_lib._compile(model, config, steps_per_epoch=10)
    assert model.jit_compile is jit


def test_a_workdir_from_before_original_existed_resumes_with_original(tmp_path, digits_config):
    """Its config.json has the paper's sigmoid and no `original`: the `original`
    config resumes it (completing the file), the default names the word."""
    workdir = str(tmp_path / "old")
    os.makedirs(workdir)
    old = json.loads(digits_config("original").to_json())
    del old["model_options"]["original"]
    old["model_options"]["activation"] = "sigmoid"
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(old, f)
    with pytest.raises(ValueError, match=r"differing keys: \['model_options'\]\).*add "
                       r"`original` to the config argument"):
        train_lib._prepare_workdir(workdir, digits_config())
    train_lib._prepare_workdir(workdir, digits_config("original"))
    with open(os.path.join(workdir, "config.json")) as f:
        completed = json.load(f)
    assert completed == json.loads(digits_config("original").to_json())
