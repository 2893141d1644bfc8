"""al_keras without TensorFlow (issue 24): the digits and idx folders as NumPy
batches (`keras.utils.PyDataset`) that match the tf.data path's, one-line
refusals of what needs TensorFlow, and train.py's `--backend`, down to a
digits run on JAX in a process where `import tensorflow` fails."""

import gzip
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from al_keras.data import arrays, datasets, errors, idx_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

# Run first in a child Python: `import tensorflow` (and tensorflow_datasets,
# ...) then fails as where TensorFlow is not installed.
BLOCK_TENSORFLOW = textwrap.dedent("""\
    import importlib.abc, sys

    class _NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.startswith("tensorflow"):
                raise ImportError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, _NoTensorFlow())
    """)


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


needs_tf = pytest.mark.skipif(not _has("tensorflow") or not _has("tensorflow_datasets"),
                              reason="compares with the tf.data path: needs TensorFlow")


@pytest.fixture
def tfds_dir(tmp_path, monkeypatch):
    """A private TFDS data dir (the tf.data path prepares idx folders there)."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    return tmp_path / "tfds"


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fashion_mnist_slice(folder, n_train=300, n_test=120):
    """An idx folder of the first images of Debian's Fashion-MNIST, or
    random images where it is not installed."""
    os.makedirs(folder)
    if os.path.isdir(DEBIAN_FASHION_MNIST):
        files = idx_files.find_idx_files(DEBIAN_FASHION_MNIST)
        parts = {key: idx_files.read_idx(path)[:n_train if key[0] == "train" else n_test]
                 for key, path in files.items()}
    else:
        rng = np.random.default_rng(0)
        parts = {(split, part): (rng.integers(0, 256, (n, 28, 28)) if part == "images"
                                 else rng.integers(0, 10, n))
                 for split, n in (("train", n_train), ("test", n_test))
                 for part in ("images", "labels")}
    for key, stem in idx_files.IDX_FILES.items():
        _write_idx(os.path.join(folder, stem + ".gz"), parts[key])
    return parts


def _numpy(batches):
    return [(np.asarray(x), np.asarray(y)) for x, y in batches]


def _sorted_rows(x, y):
    order = sorted(range(len(x)), key=lambda i: (x[i].tobytes(), int(y[i])))
    return x[order], y[order]


def _assert_same_batches(tf_data, np_data, batch_size):
    """The NumPy `Data` against the tf.data one: counts, splits, batches."""
    assert np_data.pipeline == "numpy" and tf_data.pipeline == "tf.data"
    for key in ("input_shape", "num_classes", "num_train", "num_test", "num_validation"):
        assert getattr(np_data, key) == getattr(tf_data, key), key
    # Test and validation: the same batches, value for value, in order.
    for split in ("test", "validation"):
        want, got = getattr(tf_data, split), getattr(np_data, split)
        if want is None:
            assert got is None
            continue
        want, got = _numpy(want), _numpy(got)
        assert len(got) == len(want) == len(getattr(np_data, split))
        for (x, y), (wx, wy) in zip(got, want):
            assert (x.dtype, y.dtype) == (wx.dtype, wy.dtype) == (np.float32, np.int32)
            np.testing.assert_array_equal(x, wx)  # The same standardisation, exactly.
            np.testing.assert_array_equal(y, wy)
    # Training: the steps of an epoch, its batch sizes, and the same examples
    # each epoch (in NumPy's order), an endless dataset epoch after epoch.
    steps = math.ceil(tf_data.num_train / batch_size)
    want = _numpy(tf_data.train_epochs(0).take(2 * steps))
    endless = np_data.train_epochs(0)
    assert endless.num_batches is None
    got = [endless[i] for i in range(2 * steps)]
    for epoch in range(2):
        mine, theirs = got[epoch * steps:(epoch + 1) * steps], want[
            epoch * steps:(epoch + 1) * steps]
        assert [len(y) for _, y in mine] == [len(y) for _, y in theirs]
        x, y = (np.concatenate(parts) for parts in zip(*mine))
        wx, wy = (np.concatenate(parts) for parts in zip(*theirs))
        assert x.dtype == wx.dtype == np.float32 and y.dtype == wy.dtype == np.int32
        for a, b in zip(_sorted_rows(x, y), _sorted_rows(wx, wy)):
            np.testing.assert_array_equal(a, b)
    first, second = (np.concatenate([y for _, y in got[e * steps:(e + 1) * steps]])
                     for e in range(2))
    assert not np.array_equal(first, second)  # Reshuffled every epoch.
    # A run resumed at epoch 1 sees what the uninterrupted one saw.
    resumed = np_data.train_epochs(1)
    for i in (0, steps - 1):
        for a, b in zip(resumed[i], got[steps + i]):
            np.testing.assert_array_equal(a, b)
    # `train`: one epoch a pass, the next epoch's order on the next pass.
    passes = [_numpy(np_data.train) for _ in range(2)]
    assert [len(p) for p in passes] == [steps, steps] == [len(np_data.train)] * 2
    for epoch, batches in enumerate(passes):
        np.testing.assert_array_equal(np.concatenate([y for _, y in batches]),
                                      (first, second)[epoch])


@needs_tf
def test_digits_numpy_batches_are_the_tf_data_ones():
    for limits in ({}, dict(validation_examples=100, max_train_examples=500,
                            max_test_examples=90)):
        tf_data = datasets.load("digits", batch_size=32, test_batch_size=64, seed=3,
                                pipeline="tf.data", **limits)
        np_data = datasets.load("digits", batch_size=32, test_batch_size=64, seed=3,
                                pipeline="numpy", **limits)
        _assert_same_batches(tf_data, np_data, 32)


@needs_tf
def test_fashion_mnist_numpy_batches_are_the_tf_data_ones(tmp_path, tfds_dir):
    folder = tmp_path / "fashion-mnist"
    parts = _fashion_mnist_slice(folder)
    limits = dict(validation_examples=50, max_test_examples=100)
    tf_data = datasets.load("fashion_mnist", data_dir=folder, batch_size=32,
                            test_batch_size=40, pipeline="tf.data", **limits)
    np_data = datasets.load("fashion_mnist", data_dir=folder, batch_size=32,
                            test_batch_size=40, pipeline="numpy", **limits)
    _assert_same_batches(tf_data, np_data, 32)
    # Scaled to [0, 1] minus the mean pixel of all training images (before
    # the validation split), as documented.
    mean = np.float32(parts[("train", "images")].mean(dtype=np.float64) / 255)
    x, y = np_data.test[0]
    want = parts[("test", "images")][:40, :, :, None].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(x, want - mean)
    np.testing.assert_array_equal(y, parts[("test", "labels")][:40])


def test_numpy_batches_without_tensorflow(tmp_path, monkeypatch):
    """What `load` gives where TensorFlow is absent (pipeline=None)."""
    monkeypatch.setattr(datasets, "tensorflow_available", lambda: False)
    data = datasets.load("digits", batch_size=32)
    assert data.pipeline == "numpy" and (data.num_train, data.num_test) == (1438, 359)
    assert isinstance(data.test, arrays.Batches) and len(data.train) == 45
    x, y = data.train_epochs(0)[44]
    assert x.shape == (30, 8, 8, 1) and y.shape == (30,)  # 1438 = 44 * 32 + 30.
    parts = _fashion_mnist_slice(tmp_path / "fm", n_train=70, n_test=30)
    data = datasets.load("mnist", data_dir=tmp_path / "fm", batch_size=16,
                         validation_examples=10)
    assert (data.num_train, data.num_validation, data.num_test) == (60, 10, 30)
    np.testing.assert_array_equal(data.validation[0][1], parts[("train", "labels")][60:])


@pytest.mark.parametrize("name, kwargs, words", [
    ("cifar10", {}, "cifar10 (read through TFDS, standardized in tf.data) needs "
                    "TensorFlow, which is not installed: pip install tensorflow "
                    "tensorflow-datasets (or al_keras[tensorflow])."),
    ("wordnet", {}, "The wordnet text set (TFDS, tf.data and Keras' TextVectorization) "
                    "needs TensorFlow"),
    ("fashion_mnist", {}, "fashion_mnist from TFDS (config.data_dir is empty) needs "
                          "TensorFlow"),
    ("digits", {"pipeline": "tf.data"}, "pipeline='tf.data' needs TensorFlow"),
])
def test_what_needs_tensorflow_says_so_in_one_line(name, kwargs, words, monkeypatch):
    monkeypatch.setattr(datasets, "tensorflow_available", lambda: False)
    with pytest.raises(errors.TensorFlowRequiredError) as raised:
        datasets.load(name, batch_size=8, **kwargs)
    message = str(raised.value)
    assert message.startswith(words) and "\n" not in message
    assert isinstance(raised.value, ImportError)
    assert datasets.needs_tensorflow("digits") is None
    assert datasets.needs_tensorflow("fashion_mnist", data_dir="/nowhere") is None


def _train_py(*args, block_tensorflow=False, timeout=120, env=None):
    """Runs train.py in a Python of its own: (exit status, stdout, stderr)."""
    command = [sys.executable, os.path.join(ROOT, "train.py"), *args]
    if block_tensorflow:  # The blocker first, then train.py as __main__.
        command = [sys.executable, "-c", BLOCK_TENSORFLOW + textwrap.dedent(f"""\
            import runpy
            sys.argv = {[os.path.join(ROOT, "train.py"), *args]!r}
            runpy.run_path(sys.argv[0], run_name="__main__")
            """)]
    environment = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    environment.update(TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=environment)
    return proc.returncode, proc.stdout, proc.stderr


def test_train_py_refuses_an_unknown_backend_in_one_line(tmp_path):
    workdir = f"--workdir={tmp_path / 'run'}"
    code, _, stderr = _train_py("--backend=bogus", workdir)
    assert code != 0 and "Traceback" not in stderr
    assert stderr.strip() == ("train.py: --backend=bogus: unknown backend 'bogus'; "
                              "choose one of jax, tensorflow.")
    code, _, stderr = _train_py(workdir, env={"KERAS_BACKEND": "torch"})
    assert code != 0 and stderr.strip().startswith("train.py: KERAS_BACKEND=torch: ")
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_train_py_help_names_the_backend_flag():
    backend = "--backend=" + ("jax" if _has("jax") else "tensorflow")
    code, stdout, stderr = _train_py(backend, "--help")  # absl's usage exits with 1.
    assert "Traceback" not in stderr, stderr[-2000:]
    assert "--backend: <jax|tensorflow>: Keras' backend" in stdout + stderr


def test_without_tensorflow_train_py_names_the_default_backend_it_lacks(tmp_path):
    code, _, stderr = _train_py(f"--workdir={tmp_path / 'run'}", block_tensorflow=True,
                                env={"KERAS_HOME": str(tmp_path)})  # No keras.json.
    assert code != 0 and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert stderr.startswith(
        "train.py: Keras' default backend, tensorflow, needs TensorFlow, which is not "
        "installed: pip install tensorflow (or al_keras[tensorflow])")
    if _has("jax"):
        assert stderr.strip().endswith("; or train on JAX with --backend=jax (or "
                                       "KERAS_BACKEND=jax).")
    assert not (tmp_path / "run").exists()


needs_jax = pytest.mark.skipif(not _has("jax"), reason="JAX is not installed")


@needs_jax
@pytest.mark.parametrize("args, words", [
    (["--config=configs/wordnet.py:smoke"], "The wordnet text set (TFDS, tf.data and "
                                            "Keras' TextVectorization) needs TensorFlow"),
    (["--config=configs/cifar10.py:smoke"], "cifar10 (read through TFDS, standardized and "
                                            "augmented in tf.data) needs TensorFlow"),
    (["--config=configs/fashion_mnist.py:smoke"], "fashion_mnist from TFDS "),
    (["--config.distribute=mirrored"], "config.distribute='mirrored' (tf.distribute's "
                                       "data parallelism"),
])
def test_without_tensorflow_train_py_refuses_what_needs_it_in_one_line(
        args, words, tmp_path):
    workdir = tmp_path / "run"
    code, _, stderr = _train_py("--backend=jax", *args, f"--workdir={workdir}",
                                block_tensorflow=True)
    assert code != 0 and "Traceback" not in stderr, stderr[-3000:]
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"train.py: {words}"), stderr[-3000:]
    assert "pip install tensorflow" in line
    assert not workdir.exists()  # Refused before the workdir was made.


@pytest.mark.slow
@needs_jax
def test_without_tensorflow_digits_train_on_jax(tmp_path):
    workdir = tmp_path / "digits_jax"
    code, stdout, stderr = _train_py(
        "--backend=jax", "--config.epochs=1", "--config.model_options.hidden_units=64",
        f"--workdir={workdir}", block_tensorflow=True, timeout=600)
    assert code == 0, stderr[-3000:]
    with open(workdir / "results.json") as f:
        results = json.load(f)
    assert results["backend"] == "jax" and results["input_pipeline"] == "numpy"
    assert results["epochs"] == 1 and results["num_train"] == 1438
    assert results["test_accuracy"] > 0.6, results  # Chance: 0.1.
    assert f"test_accuracy: {results['test_accuracy']}" in stdout
    # What needs TensorFlow is left out, each said in one line.
    assert "TensorBoard logs (tensorboard/) not written" in stdout
    assert "Export skipped: A SavedModel (saved_model/) needs TensorFlow" in stdout
    assert not (workdir / "tensorboard").exists() and not (workdir / "saved_model").exists()
    assert sorted(os.listdir(workdir / "checkpoints")) == ["epoch_0001.keras"]
