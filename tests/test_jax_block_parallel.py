"""`BlockParallel` on JAX (issue 25): blocks on JAX devices, pipelined by
asynchronous dispatch.  tests/jax_block_parallel.py runs in a process of its
own with `KERAS_BACKEND=jax` and 4 host CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "jax_block_parallel.py")],
                          env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("kind", ["pipelined", "placed"])
def test_blocks_on_three_devices_compute_what_the_sequential_fit_computes(result, kind):
    run = result[kind]
    assert result["devices"] == 4
    assert run["placement"] == ["cpu:0", "cpu:1", "cpu:2"]
    # Two epochs of 1013 examples, with sample weights: the same weights.
    assert run["weights_moved"] > 0.1
    assert run["max_weight_difference"] <= 1e-5
    assert run["examples_trained"] == [2 * 1013] * 3
    assert run["iterations"] == [64, 64]
    sequential, placed = run["history"]
    for key in ("loss", "assoc_loss_3", "ae_loss_1"):
        np.testing.assert_allclose(sequential[key], placed[key], rtol=1e-4)
    # The training accuracy is that of the batch leaving the last block.
    np.testing.assert_allclose(sequential["accuracy"], placed["accuracy"], atol=0.01)
    assert sequential["accuracy"][-1] > 0.7
    for key, value in run["evaluate"][0].items():
        assert run["evaluate"][1][key] == pytest.approx(value, rel=1e-4, abs=1e-6)
    assert run["prediction_difference"] <= 1e-5
    assert run["eager_difference"] <= 1e-5


def test_each_blocks_values_and_optimizer_slots_live_on_its_device(result):
    run = result["pipelined"]
    # [block variables' devices, optimizer slots' devices] per block.
    assert run["built_on"] == [[[0], [0]], [[1], [1]], [[2], [2]]]
    assert run["trained_on"] == [[[0], [0]], [[1], [1]], [[2], [2]]]


def test_auto_placement_balances_blocks_and_describes_the_prediction(result):
    auto = result["auto"]
    assert auto["placement"] in (["cpu:0"] * 2 + ["cpu:1"] * 2,
                                 ["cpu:0"] + ["cpu:1"] * 3, ["cpu:0"] * 3 + ["cpu:1"])
    assert len(auto["block_costs"]) == 4 and min(auto["block_costs"]) > 0
    assert auto["predicted_speedup"] > 0
    assert auto["describe"].startswith(
        "BlockParallel: blocks 1") and "pipelined, jitted per block" in auto["describe"]
    assert f"predicted speedup {auto['predicted_speedup']:.2f}x" in auto["describe"]
    assert auto["examples_trained"] == [640] * 4
    devices = [int(name.split(":")[1]) for name in auto["placement"]]
    assert auto["trained_on"] == [[[d], [d]] for d in devices]
    assert auto["accuracy"] > 0.2


def test_bad_devices_and_options_get_one_line_errors(result):
    errors = result["errors"]
    assert errors["device"].startswith("device 'gpu:7' is not one of JAX's devices")
    assert "jit_compile=False" in errors["jit"]
    assert errors["placement"].startswith("placement has 2 entries but the model has 3")
    assert "xla_force_host_platform_device_count=9" in errors["num_devices"]
    assert all("\n" not in message for message in errors.values())
