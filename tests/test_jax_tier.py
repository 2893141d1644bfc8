"""The backend-agnostic part of the suite, run again on Keras' JAX backend.

Keras picks its backend once per process, so the files of `JAX_TIER` (core,
models, exits, saving, bad input) run in a pytest process of their own
with `KERAS_BACKEND=jax`; inside it, tests marked `tensorflow_only` (graph
and tape internals, numbers pinned on TensorFlow) skip.  The README's test
command so covers both backends.
"""

import os
import subprocess
import sys

import keras
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
JAX_TIER = (
    "test_layers.py", "test_models.py", "test_saving.py", "test_safe_loading.py",
    "test_api_bad_input.py", "test_early_exit.py", "test_nonfinite.py",
    "test_steps_per_execution.py", "test_gradient_isolation.py",
    "test_numeric_reference.py", "test_learning_from_the_start.py",
    "test_keras_workflow.py",
)


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() == "jax", reason="already the JAX run")
def test_the_backend_agnostic_suite_passes_on_jax():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
         "-W", "ignore::UserWarning", *JAX_TIER],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=1800)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary, summary
