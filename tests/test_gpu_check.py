"""benchmarks/gpu_check.sh: its `--smoke` run on the CPU (so that the GPU
check cannot rot before a GPU machine comes), and its time budget."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")


def _gpu_check(tmp_path, *flags, timeout=400):
    path = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(["bash", SCRIPT, f"--json={path}", *flags], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(path.read_text()), done.stdout


@pytest.mark.slow
def test_smoke_runs_every_part_and_writes_one_json_and_one_table(tmp_path):
    report, stdout = _gpu_check(tmp_path, "--smoke")
    machine = report["machine"]
    assert machine["tensorflow"] and machine["keras"]
    assert "gpus_tensorflow_sees" in machine and "nvidia_smi" in machine
    assert report["smoke"] is True and "SYNTHETIC" in report["data"]
    rows = report["rows"]
    assert not [r for r in rows if "error" in r or "skipped" in r], rows
    by_part = {}
    for row in rows:
        by_part.setdefault(row["part"], []).append(row)
    # a: AL and BP, float32 and mixed_bfloat16, with the AL/BP ratio of each.
    a = {(r["method"], r["policy"]): r for r in by_part["a"]}
    assert sorted(a) == [(m, p) for m in ("al", "bp") for p in ("float32", "mixed_bfloat16")]
    for policy in ("float32", "mixed_bfloat16"):
        al, bp = a["al", policy], a["bp", policy]
        assert al["examples_per_second"] > 0 and bp["examples_per_second"] > 0
        assert al["ratio"] == pytest.approx(
            al["examples_per_second"] / bp["examples_per_second"])
    # b: BlockParallel on 2 logical devices, pipelined and not, against part a.
    assert sorted(r["pipeline"] for r in by_part["b"]) == [False, True]
    for row in by_part["b"]:
        assert len(set(row["placement"])) == 2, row["placement"]
        assert row["describe"].startswith("BlockParallel: blocks")
        assert row["ratio"] == pytest.approx(
            row["examples_per_second"] / a["al", "float32"]["examples_per_second"])
    # c: Ray stages, when Ray is installed; d: the learning check, with data.
    if machine["ray"]:
        (ray_row,) = by_part["c"]
        assert ray_row["examples_per_second"] > 0 and "stage" in ray_row["describe"]
    else:
        assert "c" in report["skipped_parts"]
    if "d" in by_part:
        assert sorted(r["method"] for r in by_part["d"]) == ["al", "bp"]
        assert all(0 <= r["test_accuracy"] <= 1 for r in by_part["d"])
    else:
        assert "Fashion-MNIST" in report["skipped_parts"]["d"]
    assert "| part | model | method | variant | precision | examples/s | ratio |" in stdout


@pytest.mark.slow
def test_a_spent_budget_starts_no_variant_and_names_what_it_skipped(tmp_path):
    report, stdout = _gpu_check(tmp_path, "--smoke", "--budget_seconds=0",
                                "--fashion_mnist_dir=", timeout=120)
    rows = report["rows"]
    assert rows and all(r["skipped"].startswith("out of time") for r in rows), rows
    assert {r["part"] for r in rows} >= {"a", "b"}
    assert "Fashion-MNIST" in report["skipped_parts"]["d"]
    assert "skipped: out of time" in stdout
