"""The same AL on TensorFlow and on JAX, and al_keras without TensorFlow.

Each backend runs in its own process (Keras picks its backend once):
tests/backend_steps.py trains 20 steps from the same weights on the same
batches; tests/jax_without_tensorflow.py runs the user-facing API on JAX with
TensorFlow unimportable.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from al_keras.core import keras_compat

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import backend_steps  # noqa: E402

pytest.importorskip("jax")


def _run(args, backend, cwd=HERE, timeout=600):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _batches(name, path):
    kind, shape, _ = backend_steps.MODELS[name]
    rng = np.random.default_rng(0)
    x = (rng.integers(1, 50, (320,) + shape).astype("int32") if kind == "transformer"
         else rng.random((320,) + shape).astype("float32"))
    np.savez(path, x=x, y=rng.integers(0, 10, 320).astype("int32"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(backend_steps.MODELS))
def test_twenty_al_steps_give_the_same_weights_on_tensorflow_and_jax(name, tmp_path):
    batches = str(tmp_path / "in.npz")
    _batches(name, batches)
    script = os.path.join(HERE, "backend_steps.py")
    _run([script, name, batches, str(tmp_path / "w0.npz")], "tensorflow")
    initial = dict(np.load(tmp_path / "w0.npz"))
    np.savez(batches, **dict(np.load(batches)), **initial)
    for backend in ("tensorflow", "jax"):
        _run([script, name, batches, str(tmp_path / f"{backend}.npz")], backend)
    tf_run, jax_run = np.load(tmp_path / "tensorflow.npz"), np.load(tmp_path / "jax.npz")
    moved = max(np.abs(tf_run[k] - initial[k]).max() for k in initial)
    differ = max(np.abs(tf_run[k] - jax_run[k]).max() for k in initial)
    assert moved > 1e-2  # 20 steps of Adam at 1e-3 changed the weights...
    assert differ < 1e-4, (name, differ)  # ...alike on both backends.
    assert np.abs(tf_run["probabilities"] - jax_run["probabilities"]).max() < 1e-4

    # A .keras saved on one backend loads and predicts the same on the other.
    for saved, loading in (("tensorflow", "jax"), ("jax", "tensorflow")):
        out = str(tmp_path / f"{saved}_on_{loading}.npz")
        _run([script, "--load", str(tmp_path / f"{saved}.keras"), batches, out], loading)
        reloaded = np.load(out)["probabilities"]
        expected = np.load(tmp_path / f"{saved}.npz")["probabilities"]
        assert np.abs(reloaded - expected).max() < 1e-5, (saved, loading)


@pytest.mark.slow
def test_al_keras_trains_evaluates_saves_and_reloads_on_jax_without_tensorflow(tmp_path):
    out = _run([os.path.join(HERE, "jax_without_tensorflow.py"), str(tmp_path)], "jax")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["backend"] == "jax" and not result["tensorflow_loaded"]
    assert result["steps"] == 3 * 44  # 1,400 digits in batches of 32, 3 epochs.
    assert result["val_accuracy"] > 0.85
    assert result["exits"]["1"] > 0.8 and result["exits"]["2"] > 0.85
    for exit, accuracy in result["evaluate_exits"].items():
        assert abs(accuracy - result["exits"][exit]) < 1e-6
    assert 0 <= result["threshold"] <= 1
    assert result["adaptive_accuracy"] > result["exits"]["2"] - 0.03
    assert 1 <= result["adaptive_mean_exit"] < 2  # Some examples leave early.
    assert result["reloaded_max_difference"] < 1e-6
    assert result["reloaded_threshold"] == result["threshold"]
    assert result["reloaded_steps"] == result["steps"] + 2  # Its optimizers resumed.
    assert all(shape == [8, 10] for shape in result["zoo"].values()), result["zoo"]
    assert result["export"].startswith("Exporting a SavedModel needs TensorFlow")


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_private_keras_names_al_keras_uses_are_where_it_looks(backend):
    # Fails, naming each one, when a Keras release moves them: then update
    # al_keras/core/keras_compat.py (the one module that reaches into Keras).
    assert keras_compat.missing_private_names(backend) == []


def test_a_moved_private_name_is_reported(monkeypatch):
    monkeypatch.setattr(keras_compat, "PRIVATE_NAMES", keras_compat.PRIVATE_NAMES + (
        ("any", "keras.src.trainers.trainer.Trainer._moved_in_a_future_release"),))
    assert keras_compat.missing_private_names("jax") == [
        "keras.src.trainers.trainer.Trainer._moved_in_a_future_release"]
