"""BlockParallel's predicted speedup: measured, exposed, and stated at start-up."""

import pytest

from al_keras import distribute
from al_keras.distribute import block_parallel, pipeline_simulator
from al_keras.training import train_lib


def _fixed(monkeypatch, costs, profile):
    """Block costs and overlap as if measured: `costs` seconds per block
    step, `profile` the `OverlapProfile` of the placement."""
    calls = []

    def costs_of(model, input_shape, batch_size, steps, device=None, jit_compile=False):
        return [pipeline_simulator.BlockCost(0.0, c, activation_bytes=batch_size * 8)
                for c in costs]

    def overlap_of(model, input_shape, devices, batch_size, steps, jit_compile=False):
        calls.append((list(devices), jit_compile))
        return profile

    monkeypatch.setattr(block_parallel, "measure_block_costs", costs_of)
    monkeypatch.setattr(block_parallel, "measure_overlap", overlap_of)
    return calls


def test_overlap_profile_arithmetic():
    profile = block_parallel.OverlapProfile(device_seconds=(0.002, 0.003),
                                            concurrent_seconds=0.004)
    assert profile.serial_seconds == pytest.approx(0.005)
    assert profile.speedup == pytest.approx(1.25)
    assert profile.overlap == pytest.approx(0.75)
    # speedup = (serial / slowest device) * overlap
    assert profile.speedup == pytest.approx(0.005 / 0.003 * profile.overlap)


@pytest.mark.slow
def test_prediction_is_measured_on_the_placement(cpu_devices, mlp):
    strategy = distribute.BlockParallel(cpu_devices[:2])
    with strategy.scope():
        mlp(num_blocks=2)
    profile = strategy.overlap_profile
    assert len(profile.device_seconds) == 2
    assert all(s > 0 for s in profile.device_seconds) and profile.concurrent_seconds > 0
    assert strategy.predicted_speedup == pytest.approx(
        sum(profile.device_seconds) / profile.concurrent_seconds)
    assert strategy.measured_overlap == pytest.approx(
        max(profile.device_seconds) / profile.concurrent_seconds)
    costs = strategy.block_costs
    assert strategy.ideal_speedup == pytest.approx(sum(costs) / max(costs))
    line = strategy.describe()
    assert f"predicted speedup {strategy.predicted_speedup:.2f}x" in line
    assert ("no gain predicted" in line) == (strategy.predicted_speedup < 1.1)


@pytest.mark.parametrize("concurrent, gains", [(0.0105, True), (0.0190, False)])
def test_the_line_follows_the_prediction(monkeypatch, cpu_devices, concurrent, gains, mlp):
    calls = _fixed(monkeypatch, [0.01, 0.002, 0.004, 0.004],
                   block_parallel.OverlapProfile((0.012, 0.008), concurrent))
    strategy = distribute.BlockParallel(cpu_devices[:2], jit_compile=True)
    with strategy.scope():
        mlp(num_blocks=4)
    # Balanced: block 1 (0.01) alone, blocks 2-4 (0.01) on the second device.
    assert strategy.placement == [cpu_devices[0]] + [cpu_devices[1]] * 3
    assert calls == [(strategy.placement, True)]  # Timed compiled, as it trains.
    assert strategy.ideal_speedup == pytest.approx(2.0)
    assert strategy.predicted_speedup == pytest.approx(0.020 / concurrent)
    assert strategy.measured_overlap == pytest.approx(0.012 / concurrent)
    assert strategy.predicts_gain is gains
    line = strategy.describe(instead="--config.distribute=ray")
    assert line.startswith(f"BlockParallel: blocks 1 on {cpu_devices[0]}; "
                           f"2, 3, 4 on {cpu_devices[1]}, pipelined, XLA per block; "
                           "measured seconds "
                           "per block step [0.01, 0.002, 0.004, 0.004]; ")
    assert (f"predicted speedup {0.020 / concurrent:.2f}x over one device (each "
            f"device's blocks one after the other 20.0 ms, all at once "
            f"{1e3 * concurrent:.1f} ms; overlap {0.012 / concurrent:.2f}, ideal "
            "from the block costs 2.00x)") in line
    advice = ("no gain predicted (below 1.1x): use --config.distribute=ray "
              "(docs/several-devices.md)")
    assert (advice in line) is not gains
    assert line.endswith(advice if not gains else "2.00x)")


def test_no_prediction_without_measured_costs(monkeypatch, cpu_devices, mlp):
    calls = _fixed(monkeypatch, [0.01, 0.01], None)
    for options in (dict(placement=[0, 1]), dict(pipeline=False), dict(predict=False)):
        strategy = distribute.BlockParallel(cpu_devices[:2], **options)
        with strategy.scope():
            mlp(num_blocks=2)
        assert strategy.overlap_profile is None and strategy.predicted_speedup is None
        assert strategy.predicts_gain is None
        assert "predicted" not in strategy.describe()
    assert calls == []
    strategy = distribute.BlockParallel(cpu_devices[:1])  # One device: nothing to overlap.
    with strategy.scope():
        mlp(num_blocks=2)
    assert strategy.overlap_profile is None


@pytest.mark.slow
def test_train_start_up_line_points_to_ray_when_no_gain(monkeypatch, capsys, tmp_path,
                                                         digits_config):
    _fixed(monkeypatch, [0.01, 0.01],
           block_parallel.OverlapProfile((0.010, 0.010), 0.019))
    config = digits_config(distribute="blocks", num_devices=2, epochs=1, export=False,
                           max_train_examples=64, max_test_examples=64,
                           eval_exits=False, jit_compile=False)
    train_lib.train_and_evaluate(config, str(tmp_path / "run"), verbose=0)
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("BlockParallel:")]
    assert len(lines) == 1
    assert "predicted speedup 1.05x over one device" in lines[0]
    assert lines[0].endswith("no gain predicted (below 1.1x): use "
                             "--config.distribute=ray (docs/several-devices.md).")
