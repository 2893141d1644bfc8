"""benchmarks/backends.py and benchmarks/variants.py: the timing plan, the
rates, the choice of steps_per_execution, the ratios and the report, and the
alternation of variants over rounds (no training, no processes)."""

import contextlib
import functools
import importlib.util
import json
import os
import sys

import pytest
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")


@contextlib.contextmanager
def _own_flags():
    """The script's absl flags go to a FlagValues of their own, not absl's
    global one, where another benchmark's test defines `--models` too."""
    own = flags.FlagValues()
    names = ("DEFINE_bool", "DEFINE_enum", "DEFINE_float", "DEFINE_integer", "DEFINE_list",
             "DEFINE_string")
    originals = {name: getattr(flags, name) for name in names}
    for name, define in originals.items():
        setattr(flags, name, functools.partial(define, flag_values=own))
    try:
        yield
    finally:
        for name, define in originals.items():
            setattr(flags, name, define)


def _load(name):
    if BENCHMARKS not in sys.path:  # backends.py imports its sibling variants.py.
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{name}", os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    with _own_flags():
        spec.loader.exec_module(module)
    return module


backends = _load("backends")
variants = _load("variants")


def test_plan_is_whole_calls_with_one_untimed_call_first():
    assert variants.plan(1, 32) == (10, 33)
    assert variants.plan(8, 32) == (16, 40)
    assert variants.plan(32, 32) == (32, 64)
    assert variants.plan(32, 40) == (32, 96)  # 40 steps need 2 timed calls.
    for spe in (1, 3, 8, 32):
        warmup, timed = variants.plan(spe, 20)
        assert warmup % spe == 0 and timed % spe == 0
        assert warmup >= variants.WARMUP_STEPS and timed - spe >= 20


def test_rate_counts_steps_between_the_first_and_last_call_ends():
    assert variants.rate([(8, 10.0), (16, 11.0), (24, 12.0)]) == pytest.approx(8.0)
    assert variants.rate([(1, 5.0)]) is None
    assert variants.rate([]) is None
    ends = [(8, 10.0, 100.0), (16, 11.0, 101.5), (24, 12.0, 103.0)]
    assert variants.rate(ends) == pytest.approx(8.0)
    assert variants.cores_used(ends) == pytest.approx(1.5)
    assert variants.cores_used(ends[:1]) is None


def test_contended_rounds_kept_far_fewer_cores_busy_than_the_most():
    assert backends.contended([1.0, 1.93, 1.94]) == [True, False, False]
    assert backends.contended([1.36, 1.35, 1.36]) == [False, False, False]
    assert backends.contended([None, 1.9]) == [False, False]
    assert backends.contended([]) == []


def test_best_spe_is_the_fastest_timed_candidate():
    assert backends.best_spe({"1": 10.0, "8": 12.5, "32": 12.0}) == 8
    assert backends.best_spe({"1": None, "8": 3.0}) == 8
    assert backends.best_spe({"1": None}) is None


def test_ratios_and_targets():
    r = backends.ratios({"tf_al": 10.0, "tf_bp": 20.0, "jax_al": 12.0, "jax_bp": 20.0})
    assert r["jax_al_over_tf_al"] == 1.2
    assert r["al_over_bp_tf"] == 0.5
    assert r["al_over_bp_jax"] == 0.6
    assert r["targets_met"] == {"jax_al_over_tf_al >= 1.0": True,
                                "al_over_bp_jax >= al_over_bp_tf": True}
    r = backends.ratios({"tf_al": 10.0, "tf_bp": 20.0, "jax_al": None, "jax_bp": 20.0})
    assert r["jax_al_over_tf_al"] is None and r["al_over_bp_jax"] is None
    assert r["targets_met"] == {"jax_al_over_tf_al >= 1.0": None,
                                "al_over_bp_jax >= al_over_bp_tf": None}
    r = backends.ratios({"tf_al": 10.0, "tf_bp": 10.0, "jax_al": 9.0, "jax_bp": 10.0})
    assert r["targets_met"] == {"jax_al_over_tf_al >= 1.0": False,
                                "al_over_bp_jax >= al_over_bp_tf": False}


def _result(sweep, batch=32):
    return {"steps_per_second": sweep, "first_fit_seconds": {k: 2.0 for k in sweep},
            "cores_used": {k: 1.9 for k in sweep}, "batch_size": batch,
            "load_average": [1.0, 1.0, 1.0]}


def test_summarise_reports_medians_spe_sweeps_ratios_and_errors():
    outcomes = {
        ("mlp", "tf_al"): {"results": [_result({"1": 9.0, "8": 10.0}), _result({"8": 12.0}),
                                       _result({"8": 11.0})],
                           "values": [10.0, 12.0, 11.0], "median": 11.0, "error": None},
        ("mlp", "tf_bp"): {"results": [_result({"1": 22.0, "8": 20.0})],
                           "values": [22.0], "median": 22.0, "error": None},
        ("mlp", "jax_al"): {"results": [], "values": [], "median": None,
                            "error": "mlp:jax_al: AttributeError: no"},
    }
    best = {("mlp", "tf_al"): 8, ("mlp", "tf_bp"): 1}
    report = backends.summarise(outcomes, ["mlp"], ["tf_al", "tf_bp", "jax_al"], best)
    mlp = report["mlp"]
    assert mlp["tf_al"]["steps_per_second"] == 11.0
    assert mlp["tf_al"]["steps_per_execution"] == 8
    assert mlp["tf_al"]["rounds"] == [10.0, 12.0, 11.0]
    assert mlp["tf_al"]["sweep"] == {"1": 9.0, "8": 10.0}
    assert mlp["tf_al"]["cores_used"] == [1.9, 1.9, 1.9]
    assert mlp["tf_bp"]["steps_per_execution"] == 1
    assert mlp["jax_al"]["error"].endswith("AttributeError: no")
    assert mlp["jax_al"]["steps_per_second"] is None
    assert mlp["al_over_bp_tf"] == 0.5
    assert mlp["jax_al_over_tf_al"] is None
    json.dumps(report)  # Writable as it is.
    text = backends.tables(report, ["tf_al", "tf_bp", "jax_al"])
    assert "| mlp | 11.00 (spe 8) | 22.00 (spe 1) | failed |" in text
    assert "AttributeError: no" in text
    assert "| mlp | tf_al | 10.0 (1.9), 12.0 (1.9), 11.0 (1.9) |" in text


def test_alternate_reverses_every_other_round_and_stops_a_failed_variant():
    calls = []

    def run(variant, round_index):
        calls.append((round_index, variant))
        if variant == "b" and round_index == 1:
            raise variants.VariantError("b: RuntimeError: broke\nmore")
        return {"steps_per_second": {"a": 1.0, "b": 2.0, "c": 3.0}[variant] + round_index}

    outcomes = variants.alternate(["a", "b", "c"], run, 3, log=None)
    assert calls == [(0, "a"), (0, "b"), (0, "c"), (1, "c"), (1, "b"), (1, "a"),
                     (2, "a"), (2, "c")]
    assert outcomes["a"]["values"] == [1.0, 2.0, 3.0] and outcomes["a"]["median"] == 2.0
    assert outcomes["b"]["values"] == [2.0] and outcomes["b"]["median"] == 2.0
    assert outcomes["b"]["error"] == "b: RuntimeError: broke"
    assert outcomes["c"]["median"] == 4.0


def test_error_line_and_result_parsing():
    stderr = ("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
              "    boom()\nAttributeError: 'ALModel' object has no attribute 'x'\n"
              "I0000 some log line after it\n")
    assert variants.error_line(stderr) == "AttributeError: 'ALModel' object has no attribute 'x'"
    assert variants.error_line("just a line\n") == "just a line"
    assert variants.error_line("", 3) == "exit status 3"
    stdout = 'noise\nRESULT {"a": 1}\nRESULT {"a": 2}\nmore noise\n'
    assert variants.parse_result(stdout) == {"a": 2}
    assert variants.parse_result("nothing") is None
    assert variants.median([3.0, None, 1.0, 2.0, float("nan")]) == 2.0
    assert variants.median([None]) is None
