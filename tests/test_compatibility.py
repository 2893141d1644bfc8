"""What must survive a change of layout: the package is importable next to a
default workdir, `.keras` files and workdirs written by al_keras 0.1.0 (the
flat module layout) load and resume."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from al_keras.training import runs
from test_configs import load_config_module

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LEGACY = os.path.join(HERE, "data", "keras_v0_1")
LEGACY_WORKDIR = os.path.join(HERE, "data", "workdir_v0_1")
IMPORT_CHECK = "import al_keras; print(al_keras.models.get.__module__)"


def _import_from(cwd):
    return subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_al_keras_imports_in_every_folder_above_the_default_workdir():
    workdir = runs.default_workdir(load_config_module("digits").get_config())
    assert workdir == os.path.join(runs.DEFAULT_WORKDIR_ROOT, "digits_mlp_al")
    made = not os.path.exists(runs.DEFAULT_WORKDIR_ROOT)
    os.makedirs(workdir, exist_ok=True)
    try:
        folder = os.path.dirname(workdir)
        while True:
            proc = _import_from(folder)
            assert proc.returncode == 0 and proc.stdout.strip() == "al_keras.models.zoo", (
                folder, proc.stderr[-1500:])
            if folder == os.path.dirname(folder):
                break
            folder = os.path.dirname(folder)
    finally:
        if made:
            shutil.rmtree(runs.DEFAULT_WORKDIR_ROOT, ignore_errors=True)


@pytest.mark.slow
def test_the_import_check_fails_where_a_folder_shadows_the_package(tmp_path):
    """The check above can fail: an empty `al_keras/` folder in the current
    directory (as the old default workdir /tmp/al_keras was) shadows the
    installed package."""
    (tmp_path / "al_keras" / "digits_mlp_al").mkdir(parents=True)
    proc = _import_from(tmp_path)
    assert proc.returncode != 0 and "has no attribute 'models'" in proc.stderr


@pytest.mark.slow
def test_keras_files_of_version_0_1_load_and_predict_the_same(tmp_path):
    """Every class al_keras registers, saved by 0.1.0, in a fresh process that
    imports only al_keras (tests/data/keras_v0_1/make_files.py wrote them)."""
    expected = np.load(os.path.join(LEGACY, "expected.npz"))
    keys = sorted({name.split("/")[0] for name in expected})
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({
        key: {"path": os.path.join(LEGACY, f"{key}.keras"),
              "inputs": os.path.join(LEGACY, "inputs.npy")} for key in keys}))
    out = tmp_path / "out.npz"
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "load_keras_safely.py"), str(manifest), str(out)],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.load(out)
    errors = {k: str(got[k]) for k in got if k.endswith("/error")}
    assert not errors, errors
    assert keys == ["al_cnn_light", "al_mlp_schedule", "al_residual", "bp_cnn_light"]
    for name in expected:
        if name.endswith(("/class", "/iterations")):
            assert np.array_equal(got[name], expected[name]), name
        else:
            np.testing.assert_allclose(got[name], expected[name], atol=1e-6, err_msg=name)
    assert list(got["al_cnn_light/iterations"]) == [3] * 9  # model + 2 x 4 blocks


@pytest.mark.slow
def test_an_interrupted_workdir_of_version_0_1_resumes(tmp_path):
    """A digits run of 0.1.0 stopped after epoch 1 of 2, resumed by today's
    train.py, ends with the metrics of 0.1.0's uninterrupted run.  Its AL had
    the paper's settings, today's word `original` (without it, train.py
    names the word: tests/test_train.py)."""
    workdir = tmp_path / "run"
    shutil.copytree(LEGACY_WORKDIR, workdir)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"),
         f"--config={os.path.join(ROOT, 'configs', 'digits.py')}:original", "--config.epochs=2",
         "--config.model_options.hidden_units=16", "--config.model_options.label_units=8",
         f"--workdir={workdir}"],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming from" in proc.stdout and "epoch_0001.keras (epoch 1 finished)" in proc.stdout
    finished = open(os.path.join(HERE, "data", "workdir_v0_1_finished_metrics.csv")).read()
    assert (workdir / "metrics.csv").read_text() == finished
    assert runs.load_run(str(workdir))["results"]["epochs"] == 2
