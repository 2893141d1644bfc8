"""benchmarks/device_check.sh rehearsed here: a virtual environment with only
what the device machine's image has (JAX, no TensorFlow, no Keras), the
wheels of benchmarks/device_wheels.sh for this Python, and the `--smoke` run
(so that the device check cannot rot before a device machine comes); and
both scripts' bad options, refused in one line."""

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEELS_SCRIPT = os.path.join(ROOT, "benchmarks", "device_wheels.sh")
CHECK_SCRIPT = os.path.join(ROOT, "benchmarks", "device_check.sh")
# What the device image holds of al_keras' and Keras' needs (KINDS.md), at
# the versions installed here so pip takes them from its cache; no keras,
# optree, namex (the wheels bring those), ml_collections or TensorFlow.
IMAGE_PACKAGES = ("numpy", "absl-py", "h5py", "ml-dtypes", "rich", "scikit-learn",
                  "matplotlib", "PyYAML", "packaging", "typing-extensions")


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "KERAS_BACKEND", "VIRTUAL_ENV", "OUT", "WHEELS")}
    env.update(extra)
    return env


def _run(cmd, timeout, **env):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=_env(**env), cwd=ROOT)


def _image_venv(path):
    """A venv holding what the device image has; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    python = str(path / "bin" / "python")
    pins = [f"jax[cpu]=={importlib.metadata.version('jax')}"] + [
        f"{name}=={importlib.metadata.version(name)}" for name in IMAGE_PACKAGES]
    done = _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 *pins], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return python


@pytest.mark.slow
def test_smoke_runs_on_the_device_image_without_tensorflow(tmp_path):
    python = _image_venv(tmp_path / "venv")
    absent = _run([python, "-c", "import importlib.util as u; "
                   "print([m for m in ('tensorflow', 'keras', 'optree') if u.find_spec(m)])"],
                  timeout=60)
    assert absent.stdout.strip() == "[]", absent.stdout + absent.stderr

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheels = tmp_path / "whl"
    done = _run(["bash", WHEELS_SCRIPT, "--python-version", version, "--dest", str(wheels)],
                timeout=300, PYTHON=python)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].endswith("MiB  total"), done.stdout
    names = sorted(p.name.split("-")[0] for p in wheels.glob("*.whl"))
    assert names == ["keras", "namex", "optree"], names

    out = tmp_path / "out"
    done = _run(["bash", CHECK_SCRIPT, "--smoke", "--out", str(out), "--wheels", str(wheels)],
                timeout=460, PYTHON=python)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads((out / "device_check.json").read_text())
    assert "machine" in report, sorted(report)  # part f
    assert set("abcde") <= set(report["parts"]), sorted(report["parts"])
    assert isinstance(report["skipped"], list) and report["smoke"] is True
    failed = [(part, row) for part, value in report["parts"].items()
              for row in value["rows"] if row.get("error")]
    assert not failed, failed
    assert report["machine"]["keras"] == importlib.metadata.version("keras")
    table = (out / "device_check.md").read_text()
    assert any(line.startswith("|") for line in table.splitlines()), table


@pytest.mark.parametrize("script, args, says", [
    (WHEELS_SCRIPT, ["--platform", "win32"], "unknown option '--platform'"),
    (WHEELS_SCRIPT, ["--python-version", "twelve"], "must look like 3.12"),
    (WHEELS_SCRIPT, ["--dest"], "--dest needs a folder"),
    (CHECK_SCRIPT, ["--smoke", "--wheels", "/nonexistent/whl"],
     "run bash benchmarks/device_wheels.sh first"),
])
def test_bad_options_are_refused_in_one_line(script, args, says):
    done = _run(["bash", script, *args], timeout=30)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and says in done.stderr, done.stderr
