"""Shared fixtures: the embedded digits data, and a quiet, seeded Keras."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest
import tensorflow as tf

import al_keras

# Four logical CPU devices for the placement tests; made before any op runs.
# (Thread settings stay TensorFlow's defaults.)
NUM_CPU_DEVICES = 4
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_CPU_DEVICES,
)


@pytest.fixture(scope="session")
def digits():
    """((x_train, y_train), (x_test, y_test)), vectors of 64 features."""
    return al_keras.data.load_digits()


@pytest.fixture(scope="session")
def cpu_devices():
    """Names of the logical CPU devices, `/device:CPU:0` first."""
    return [d.name for d in tf.config.list_logical_devices("CPU")]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    # Without the forced full gc.collect() of every test (Python's own
    # collector still runs): it cost 0.7 s a test, a fifth of the suite.
    keras.backend.clear_session(free_memory=False)
