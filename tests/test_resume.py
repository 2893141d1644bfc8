"""train.py killed at random moments resumes with nothing lost; reruns repeat.

A run of the digits config is killed with SIGKILL several times (once while a
checkpoint is being written), rerun each time, and must end with the
`metrics.csv` of a run never interrupted, byte for byte: every epoch counted
once, each resumed from the last complete checkpoint.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import keras
import pytest

from al_keras.training import runs, train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 6
STEPS_PER_EPOCH = 45  # 1,438 training digits in batches of 32.


def _command(workdir, *extra):
    return [sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}",
            f"--config.epochs={EPOCHS}", "--config.export=false", *extra]


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _run(workdir, *extra):
    proc = subprocess.run(_command(workdir, *extra), capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The workdir of a run never interrupted."""
    workdir = tmp_path_factory.mktemp("uninterrupted") / "run"
    _run(workdir)
    return workdir


@pytest.mark.slow
def test_the_same_config_and_seed_give_identical_metrics(uninterrupted, tmp_path):
    _run(tmp_path / "again")
    assert (tmp_path / "again" / "metrics.csv").read_bytes() == (
        uninterrupted / "metrics.csv").read_bytes()
    rows = runs.read_metrics(str(uninterrupted))
    assert [r["epoch"] for r in rows] == list(range(EPOCHS))
    assert rows[-1]["val_accuracy"] > 0.9
    # Timings, which differ from run to run, are kept apart.
    assert "epoch_seconds" not in (uninterrupted / "metrics.csv").read_text()
    assert all(r["epoch_seconds"] > 0 for r in rows)


def _kill_when(proc, ready, timeout=180):
    """SIGKILLs `proc` as soon as `ready()` holds; returns whether it did."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    return False


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(uninterrupted, tmp_path):
    workdir = tmp_path / "run"
    checkpoint_dir = workdir / "checkpoints"
    rng = random.Random()

    def partial_files():
        return [n for n in os.listdir(checkpoint_dir)
                if n.startswith("partial-")] if checkpoint_dir.is_dir() else []

    def finished():
        found = train_lib.checkpoints(str(checkpoint_dir))
        return found[-1][0] if found else 0

    # Each kill waits for a moment: a checkpoint being written (a new
    # partial-epoch_<k>.keras exists, not yet renamed); a random time after
    # the run finished a checkpoint (anywhere in the next epoch); or a random
    # time during startup (loading the checkpoint: startup takes ~5 s).
    plan = ["checkpoint write", "after a checkpoint", "startup", "checkpoint write"]
    kills, resumed_from = [], 0
    for moment in plan:
        proc = subprocess.Popen(_command(workdir), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=_env(), text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        during_write = None
        if moment == "checkpoint write":
            stale = set(partial_files())  # Left by the last kill: removed at start.

            def ready():
                current = set(partial_files())
                if not current:
                    stale.clear()
                return bool(current - stale)

            killed = _kill_when(proc, ready)
            during_write = bool(partial_files())  # Still there: killed mid-save.
        elif moment == "after a checkpoint":
            state = {}

            def ready():
                if "at" not in state and finished() > resumed_from:
                    state["at"] = time.time() + rng.uniform(0.0, 1.0)
                return "at" in state and time.time() > state["at"]

            killed = _kill_when(proc, ready)
        else:
            kill_at = time.time() + rng.uniform(0.5, 5.0)
            killed = _kill_when(proc, lambda: time.time() > kill_at)
        reader.join(timeout=30)
        assert killed, "".join(lines)[-3000:]
        # The run resumed from the last complete checkpoint (if it got as far
        # as training: a kill during startup may come before it says so).
        if any("/45" in line for line in lines):
            resumes = [line.strip() for line in lines if line.startswith("Resuming from")]
            assert resumes == ([f"Resuming from {checkpoint_dir}/epoch_{resumed_from:04d}"
                                f".keras (epoch {resumed_from} finished)."]
                               if resumed_from else []), (moment, resumes)
        # Whatever the moment, what is on disk is whole: every complete
        # checkpoint loads, and metrics.csv holds the finished epochs (and
        # maybe the next, logged just before its checkpoint), each once.
        resumed_from = finished()
        for _, path in train_lib.checkpoints(str(checkpoint_dir)):
            keras.models.load_model(path)
        logged = [r["epoch"] for r in runs.read_metrics(str(workdir))]
        assert logged == list(range(len(logged))) and len(logged) <= resumed_from + 1
        kills.append((moment, during_write, resumed_from))
        if resumed_from == EPOCHS:
            break

    assert len(kills) >= 3, kills
    assert any(during for _, during, _ in kills), f"no kill during a checkpoint write: {kills}"
    output = _run(workdir)  # The last rerun finishes the run.
    if resumed_from < EPOCHS:
        assert (f"Resuming from {checkpoint_dir}/epoch_{resumed_from:04d}.keras" in output
                if resumed_from else "Resuming" not in output), kills
    assert not partial_files()  # A half-written checkpoint is removed, never loaded.
    assert (workdir / "metrics.csv").read_bytes() == (
        uninterrupted / "metrics.csv").read_bytes(), kills
    model = keras.models.load_model(checkpoint_dir / f"epoch_{EPOCHS:04d}.keras")
    assert int(model.optimizer.iterations) == EPOCHS * STEPS_PER_EPOCH
    assert [int(o.iterations) for o in model.assoc_optimizers + model.ae_optimizers] == [
        EPOCHS * STEPS_PER_EPOCH] * 4
