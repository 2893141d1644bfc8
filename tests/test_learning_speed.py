"""benchmarks/learning_speed.py: its step counting and ratios (no training),
and its `--smoke` run on digits in a subprocess."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "learning_speed.py")


def _load():
    spec = importlib.util.spec_from_file_location("learning_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ls = _load()


def test_steps_to_bar_is_the_first_evaluation_at_or_above_the_bar():
    evaluations = [(10, 0.5), (20, 0.7), (30, 0.69), (40, 0.8)]
    assert ls.steps_to_bar(evaluations, 0.7) == 20  # At the bar counts.
    assert ls.steps_to_bar(evaluations, 0.75) == 40
    assert ls.steps_to_bar(evaluations, 0.1) == 10
    assert ls.steps_to_bar(evaluations, 0.81) is None
    assert ls.steps_to_bar([], 0.5) is None


def test_exit_steps_to_bar_is_the_first_step_any_exit_reaches():
    evaluations = [(10, 0.5, {"1": 0.6, "2": 0.5}), (20, 0.7, {"1": 0.65, "2": 0.7}),
                   (30, 0.8, {"1": 0.75, "2": 0.8})]
    assert ls.exit_steps_to_bar(evaluations, 0.6) == 10  # Exit 1 first.
    assert ls.exit_steps_to_bar(evaluations, 0.7) == 20  # Exit 2 (the full path).
    assert ls.exit_steps_to_bar(evaluations, 0.9) is None
    assert ls.exit_steps_to_bar([(10, 0.9, None)], 0.5) is None  # BP: no exits.


def test_best_lr_has_the_higher_mean_final_accuracy_and_the_first_on_a_tie():
    assert ls.best_lr({"0.0002": [0.8, 0.9], "0.001": [0.84, 0.84]}) == "0.0002"
    assert ls.best_lr({"0.0002": [0.8], "0.001": [0.9]}) == "0.001"
    assert ls.best_lr({"0.0002": [0.8], "0.001": [0.8]}) == "0.0002"


def _curve(accuracies, exits=None, every=10):
    return [(every * (i + 1), a, exits and {"1": exits[i], "2": a})
            for i, a in enumerate(accuracies)]


def test_summarize_bar_best_rates_ratios_and_never():
    curves = {
        "bp": {"0.0002": {"0": _curve([0.5, 0.6, 0.7]), "1": _curve([0.5, 0.6, 0.7])},
               "0.001": {"0": _curve([0.6, 0.93, 0.92]), "1": _curve([0.7, 0.9, 0.94])}},
        "al": {"0.0002": {"0": _curve([0.6, 0.7, 0.75], [0.7, 0.8, 0.8]),
                          "1": _curve([0.6, 0.7, 0.8], [0.7, 0.8, 0.85])},
               "0.001": {"0": _curve([0.5, 0.6, 0.95], [0.95, 0.91, 0.91]),
                         "1": _curve([0.5, 0.6, 0.85], [0.85, 0.93, 0.9])}},
    }
    result = ls.summarize(curves, budget=30, eval_every=10)
    # BP's best rate is 1e-3 (mean 0.93): the bar is 0.93 - 0.01 = 0.92.
    assert result["bp_best_lr"] == "0.001" and result["al_best_lr"] == "0.001"
    assert result["bar"] == pytest.approx(0.92)
    # BP reaches 0.92 at step 20 (seed 0) and 30 (seed 1): 25.  AL's full path
    # at step 30 (seed 0) and never (seed 1: 40 = budget + eval_every): 35.
    assert result["bp_steps_to_bar"] == 25 and result["bp_reached"]
    assert result["al_steps_to_bar"] == 35 and result["al_reached"] is False
    assert result["al_steps_over_bp"] == pytest.approx(35 / 25)
    # AL's exits: exit 1 at step 10 (seed 0) and 20 (seed 1): 15.
    assert result["al_exit_steps_to_bar"] == 15 and result["al_exit_reached"]
    assert result["al_exit_steps_over_bp"] == pytest.approx(15 / 25)
    assert result["al_minus_bp_accuracy"] == pytest.approx(0.90 - 0.93)
    assert result["al_final_exit_accuracy"] == pytest.approx({"1": 0.905, "2": 0.90})
    assert result["meets_targets"] == {"steps": False, "accuracy": False}
    # Per rate: the same bar; at 2e-4 neither reaches it.
    slow = result["per_lr"]["0.0002"]
    assert slow["bp"]["steps_to_bar"] == 40 and not slow["bp"]["reached"]
    assert slow["al"]["steps_to_bar"] == 40 and slow["al_steps_over_bp"] == 1.0
    assert slow["al_minus_bp_accuracy"] == pytest.approx(0.775 - 0.7)
    seed = result["per_lr"]["0.001"]["al"]["seeds"]["1"]
    assert seed["steps_to_bar"] is None and seed["exit_steps_to_bar"] == 20
    assert seed["final_accuracy"] == 0.85 and seed["final_exit_accuracy"]["1"] == 0.9
    spread = result["per_lr"]["0.001"]["bp"]["final_accuracy_spread"]
    assert spread["min"] == 0.92 and spread["max"] == 0.94
    assert spread["std"] == pytest.approx(math.sqrt(2) * 0.01)


def test_summarize_meets_the_targets_when_al_is_as_fast_and_as_accurate():
    curves = {"bp": {"0.001": {"0": _curve([0.5, 0.8])}},
              "al": {"0.001": {"0": _curve([0.8, 0.81], [0.7, 0.7])}}}
    result = ls.summarize(curves, budget=20, eval_every=10)
    assert result["al_steps_over_bp"] == 0.5
    assert result["meets_targets"] == {"steps": True, "accuracy": True}


def test_the_default_run_is_sized_for_25_to_40_minutes():
    minutes = sum(ls.estimate_seconds(name, spec.default, 3, 2)
                  for name, spec in ls.MODELS.items()) / 60
    assert 25 <= minutes <= 40
    for spec in ls.MODELS.values():
        for sizes in (spec.default, spec.full, spec.smoke):
            assert sizes.budget % sizes.eval_every == 0


def test_original_stops_at_once_where_models_get_does_not_take_it(monkeypatch):
    from absl import app

    from al_keras import models

    def get(name, **options):
        raise ValueError("Unknown option(s) ['original'] for model 'mlp' with method 'al'.")

    monkeypatch.setattr(models, "get", get)
    with pytest.raises(app.UsageError, match="does not accept original=True"):
        ls._check_original()


@pytest.mark.slow
def test_smoke_run_on_digits_writes_sane_numbers(tmp_path):
    path = tmp_path / "learning_speed.json"
    done = subprocess.run(
        [sys.executable, SCRIPT, "--smoke", "--models=digits_mlp", f"--json={path}"],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| digits_mlp |" in done.stdout and "summary:" in done.stdout
    report = json.loads(path.read_text())
    assert report["hardware"]["cpu_count"] >= 1 and report["versions"]["tensorflow"]
    assert "--smoke" in report["command"] and report["date"]
    assert set(report["summary"]) >= {"meets_steps_target", "meets_accuracy_target",
                                      "meets_both"}
    assert report["summary"]["measured"] == ["digits_mlp"]
    r = report["models"]["digits_mlp"]
    settings = r["settings"]
    budget, every = settings["step_budget"], settings["eval_every"]
    assert budget % every == 0 and budget > every

    def check_steps(steps):
        assert steps is None or (steps % every == 0 and every <= steps <= budget), steps

    def check_accuracy(accuracy):
        assert 0.0 <= accuracy <= 1.0, accuracy

    finals = {}
    for lr, numbers in r["per_lr"].items():
        for method in ("al", "bp"):
            for seed, run in numbers[method]["seeds"].items():
                check_steps(run["steps_to_bar"])
                check_accuracy(run["final_accuracy"])
                steps = [e[0] for e in run["evaluations"]]
                assert steps == list(range(every, budget + 1, every))
                for e in run["evaluations"]:
                    check_accuracy(e[1])
                if method == "al":
                    check_steps(run["exit_steps_to_bar"])
                    exits = run["final_exit_accuracy"]
                    assert len(exits) >= 2
                    for accuracy in exits.values():
                        check_accuracy(accuracy)
                    assert exits[max(exits, key=int)] == run["final_accuracy"]  # Full path.
                    if run["steps_to_bar"] is not None:
                        assert run["exit_steps_to_bar"] <= run["steps_to_bar"]
                finals.setdefault((method, lr), []).append(run["final_accuracy"])
    bp = finals["bp", r["bp_best_lr"]]
    assert r["bar"] == pytest.approx(sum(bp) / len(bp) - 0.01, abs=1e-12)
    al = finals["al", r["al_best_lr"]]
    assert r["al_minus_bp_accuracy"] == pytest.approx(sum(al) / len(al) - sum(bp) / len(bp))
    never = budget + every
    assert r["never_counts_as"] == never
    if not r["al_reached"]:  # One seed: it counts as never.
        assert r["al_steps_to_bar"] == never
    assert r["al_steps_over_bp"] == pytest.approx(r["al_steps_to_bar"] / r["bp_steps_to_bar"])
    assert r["meets_targets"]["steps"] == (r["al_reached"] and r["al_steps_over_bp"] <= 1)
    assert r["meets_targets"]["accuracy"] == (r["al_minus_bp_accuracy"] >= 0)
