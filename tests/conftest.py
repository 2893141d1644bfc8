"""Shared fixtures: the embedded digits data, a quiet, seeded Keras, and the
factories several test files share (a small MLP, the digits config, train.py
in a process of its own)."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest
import tensorflow as tf

import al_keras
from al_keras.training import config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Four logical CPU devices for the placement tests; made before any op runs.
# (Thread settings stay TensorFlow's defaults.)
NUM_CPU_DEVICES = 4
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_CPU_DEVICES,
)


def pytest_collection_modifyitems(config, items):
    """On another backend (tests/test_jax_tier.py), `tensorflow_only` skips."""
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="needs Keras' TensorFlow backend")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


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


def _make_mlp(num_blocks=2, hidden_units=32, label_units=16, num_classes=10,
              input_shape=(64,), **options):
    """A zoo MLP, by default a small one of 2 blocks on digits' 64 features.

    An argument given as None is left to the builder's default (e.g.
    `hidden_units=None` gives the zoo's 1024); `options` go to
    `al_keras.models.get` (`method`, `activation`, ...)."""
    given = dict(num_blocks=num_blocks, hidden_units=hidden_units,
                 label_units=label_units, **options)
    return al_keras.models.get(
        "mlp", input_shape=input_shape, num_classes=num_classes,
        **{k: v for k, v in given.items() if v is not None})


@pytest.fixture
def mlp():
    """`mlp(num_blocks=2, hidden_units=32, label_units=16, num_classes=10,
    input_shape=(64,), **options)`: a new, uncompiled zoo MLP."""
    return _make_mlp


def _make_digits_config(arg=None, **changes):
    """configs/digits.py's config for `arg` (e.g. "method=bp"), then `changes`."""
    config = config_lib.load_config_module(
        os.path.join(ROOT, "configs", "digits.py")).get_config(arg)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture
def digits_config():
    """`digits_config(arg=None, **changes)`: the digits config, changed."""
    return _make_digits_config


class TrainPy:
    """The repository's train.py, run by this Python in a process of its own,
    from the repository root, with TensorFlow's C++ logs quiet."""

    path = os.path.join(ROOT, "train.py")

    def command(self, *args):
        """Its command line with `args`, for `subprocess.Popen`."""
        return [sys.executable, self.path, *args]

    def env(self, **variables):
        """The environment to run it in: this one, plus `variables`."""
        return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **variables)

    def run(self, *args, env=None, timeout=120):
        """Runs it to its end: the `subprocess.CompletedProcess`, output as text.

        A run past `timeout` seconds raises (the test fails instead of hanging)."""
        return subprocess.run(self.command(*args), capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, env=self.env(**(env or {})))

    def refusal(self, *args, env=None, timeout=120):
        """Runs it; (exit status, last stderr line).

        A refusal is one line: no traceback may come before it."""
        proc = self.run(*args, env=env, timeout=timeout)
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        lines = proc.stderr.strip().splitlines()
        return proc.returncode, lines[-1] if lines else ""


@pytest.fixture
def train_py():
    """`train_py.command/env/run/refusal(*args)`: see `TrainPy`."""
    return TrainPy()
