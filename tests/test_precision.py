"""XLA and mixed precision: AL and BP train on digits as in float32, in one
process, with blocks placed on devices and under data parallelism."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras import distribute
from al_keras.training import train_lib
from test_configs import load_config_module

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
COMPUTE = {"float32": "float32", "mixed_float16": "float16",
           "mixed_bfloat16": "bfloat16"}


def _train(method, policy, digits, epochs=10):
    (x, y), (x_test, y_test) = digits
    keras.utils.set_random_seed(3)
    with train_lib.dtype_policy(policy):
        model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                    method=method, hidden_units=128,
                                    label_units=64)
    assert keras.config.dtype_policy().name == "float32"  # Restored.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  jit_compile=True)
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0).history
    accuracy = model.evaluate(x_test, y_test, verbose=0,
                              return_dict=True)["accuracy"]
    return model, history, accuracy


@pytest.mark.slow
@pytest.mark.parametrize("method", ["al", "bp"])
def test_xla_and_mixed_precision_train_in_the_float32_band(method, digits):
    accuracy = {}
    for policy in POLICIES:
        model, history, accuracy[policy] = _train(method, policy, digits)
        assert model.jit_compile is True
        for key, values in history.items():
            assert np.all(np.isfinite(values)), (policy, key, values)
        assert history["loss"][-1] < history["loss"][0] / 2, (policy, history["loss"])
        # Computed in the policy's type, kept in float32.
        x = np.zeros((2, 64), "float32")
        first = model.blocks[0].encoder if method == "al" else model.encoders[0]
        assert first(x).dtype == COMPUTE[policy]
        assert {v.dtype for v in model.trainable_variables} == {"float32"}
        assert model.predict(x, verbose=0).dtype == np.float32
        if method == "al":
            optimizers = model.assoc_optimizers + model.ae_optimizers
            scaled = [isinstance(o, keras.optimizers.LossScaleOptimizer)
                      for o in optimizers]
            # float16 needs a loss scale: one of its own per block optimizer.
            assert all(scaled) if policy == "mixed_float16" else not any(scaled)
            if policy == "mixed_float16":
                scales = [o.dynamic_scale for o in optimizers]
                assert len({id(s) for s in scales}) == len(optimizers)
                assert all(np.isfinite(float(s)) and float(s) >= 1 for s in scales)
    assert accuracy["float32"] > 0.9, accuracy
    for policy in POLICIES[1:]:
        assert abs(accuracy[policy] - accuracy["float32"]) <= 0.03, accuracy


def _strategy(engine, devices):
    if engine == "blocks":  # Pipelined, each block's step XLA on its device.
        return distribute.BlockParallel(devices, placement=[0, 1], jit_compile=True)
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["blocks", "mirrored"])
def test_mixed_precision_with_placement_trains_in_the_float32_band(
        engine, digits, cpu_devices):
    """BlockParallel (a block per device, pipelined, compiled per block) and
    MirroredStrategy (2 replicas) under each policy: finite losses, the
    float32 accuracy band, one loss scale per block optimizer, and (placed)
    each block's loss scale on its device, the activations handed between
    the devices in the compute type."""
    (x, y), (x_test, y_test) = digits
    devices = cpu_devices[:2]
    accuracy = {}
    for policy in POLICIES:
        keras.utils.set_random_seed(3)
        strategy = _strategy(engine, devices)
        with strategy.scope(), train_lib.dtype_policy(policy):
            model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                        hidden_units=128, label_units=64)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        history = model.fit(x, y, batch_size=32, epochs=6, verbose=0).history
        for key, values in history.items():
            assert np.all(np.isfinite(values)), (policy, key, values)
        assert history["loss"][-1] < history["loss"][0] / 2, (policy, history["loss"])
        accuracy[policy] = model.evaluate(x_test, y_test, verbose=0,
                                          return_dict=True)["accuracy"]
        assert model.blocks[1].encoder(np.zeros((2, 128), "float32")).dtype == COMPUTE[policy]
        optimizers = model.assoc_optimizers + model.ae_optimizers
        scaled = [isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers]
        assert all(scaled) if policy == "mixed_float16" else not any(scaled)
        if policy == "mixed_float16":
            scales = [o.dynamic_scale for o in optimizers]
            assert len({id(s) for s in scales}) == len(optimizers) == 4
            values = [float(s.numpy()) for s in scales]
            assert all(np.isfinite(v) and v >= 1 for v in values), values
        if engine == "blocks":
            state = model.executor.placement_state(model)
            assert state.jit_blocks is True
            boundary = state.holder.boundaries[0]
            assert boundary["s"].dtype == COMPUTE[policy]
            assert boundary["t"].dtype == COMPUTE[policy]
            for index in (0, 1):
                for optimizer in (model.assoc_optimizers[index], model.ae_optimizers[index]):
                    for variable in optimizer.variables:
                        device = tf.DeviceSpec.from_string(variable.value.device)
                        assert device.device_index == index, variable.path
    assert accuracy["float32"] > 0.9, accuracy
    for policy in POLICIES[1:]:
        assert abs(accuracy[policy] - accuracy["float32"]) <= 0.03, accuracy


def test_float16_loss_scale_skips_a_step_with_overflowing_gradients(digits):
    """A block whose scaled gradients overflow skips its update and halves
    its own loss scale; the other blocks' updates go on."""
    (x, y), _ = digits
    with train_lib.dtype_policy("mixed_float16"):
        model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                    hidden_units=32, label_units=16)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0)
    overflowing = model.assoc_optimizers[1]
    overflowing.dynamic_scale.assign(2.0 ** 60)  # Scaled grads overflow float16.
    before = [v.numpy() for v in model.blocks[1].input_side_variables]
    others = [v.numpy() for v in model.blocks[0].input_side_variables]
    model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0)
    assert float(overflowing.dynamic_scale) == 2.0 ** 59
    for b, v in zip(before, model.blocks[1].input_side_variables):
        np.testing.assert_array_equal(b, v.numpy())
    assert any(not np.array_equal(b, v.numpy())
               for b, v in zip(others, model.blocks[0].input_side_variables))
    assert float(model.assoc_optimizers[0].dynamic_scale) < 2.0 ** 30


@pytest.mark.slow
def test_config_dtype_policy_reaches_the_model(tmp_path):
    config = load_config_module("digits").get_config()
    config.update(epochs=1, export=False, eval_exits=False,
                  dtype_policy="mixed_bfloat16")
    results = train_lib.train_and_evaluate(config, str(tmp_path), verbose=0)
    assert 0 <= results["test_accuracy"] <= 1  # The band: the test above.
    assert keras.config.dtype_policy().name == "float32"  # Restored.
    (_, path), = train_lib.checkpoints(str(tmp_path / "checkpoints"))
    model = keras.models.load_model(path)
    # The resumed model computes in bfloat16 too.
    block = model.blocks[0]
    assert block.encoder.layers[-1].dtype_policy.name == "mixed_bfloat16"
    s = block.encoder(np.zeros((2, 8, 8, 1), "float32"))
    assert s.dtype == "bfloat16" and block.bridge(s).dtype == "bfloat16"
