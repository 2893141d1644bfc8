"""Running a benchmark's variants, each in its own process: shared by the benchmarks.

The rule of the benchmarks (compare each method at its best, each variant
in its own process, alternated, after warm-up) in one place:

* `spawn(script, child, ...)` runs `python SCRIPT --child=CHILD ARGS...` in a
  fresh process, with `env` added to this process' environment (e.g.
  `{"KERAS_BACKEND": "jax"}`), and returns the dict the child printed with
  `emit(result)` (its last `RESULT {json}` line on stdout).  A child that
  fails, prints no result or runs past `timeout` raises `VariantError`,
  whose message is one line (the child's exception, e.g.
  `AttributeError: 'ALModel' object has no attribute ...`); its `details`
  hold the tail of the child's stderr.
* `alternate(variants, run, rounds, value=...)` calls `run(variant, round)`
  for every variant in every round, alternated (round 1 in the given order,
  round 2 reversed, and so on: drift of a shared machine falls on every
  variant alike), and returns per variant its results, their values and
  the median value, or the one-line error that stopped it (a failed variant
  is not run again).

* `time_fit(model, x, y, batch_size, steps)`, in the child: a compiled
  `fit`'s steady-state steps/s on either backend (JAX's asynchronous
  dispatch included: the clock reads the step's logs, i.e. waits for it).

No flags and no TensorFlow here, so that any benchmark script can import it
before its child picks a backend.
"""

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

RESULT_PREFIX = "RESULT "
WARMUP_STEPS = 10  # At least, before a timed fit.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


class VariantError(RuntimeError):
    """A variant's process failed; `str()` is one line, `details` its stderr's tail."""

    def __init__(self, message, details=""):
        super().__init__(message)
        self.details = details


def emit(result):
    """Prints `result` (a JSON-able dict) as the child's result line."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def error_line(stderr, returncode=None):
    """The one line that says why a child failed: its last exception line."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line[:500]
    if lines:
        return lines[-1][:500]
    return f"exit status {returncode}" if returncode is not None else "no output"


def parse_result(stdout):
    """The dict of the last `RESULT {json}` line of `stdout`, or None."""
    lines = [line for line in (stdout or "").splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX):]) if lines else None


def spawn(script, child, *, args=(), env=None, timeout=None, python=None):
    """Runs `python script --child=child *args` in a fresh process; its result.

    Args:
        script: the benchmark script (usually `__file__`).
        child: the `--child` flag's value, e.g. `"mlp:tf_al"`.
        args: more command-line arguments for the child.
        env: variables added to (or replacing) this process' environment.
        timeout: seconds before the child is killed (`VariantError`).
        python: the interpreter (default: this one).

    Returns:
        The dict the child passed to `emit`.
    """
    command = [python or sys.executable, script, f"--child={child}", *args]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    environment.update(env or {})
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=environment,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        raise VariantError(f"{child}: timed out after {timeout} s", (stderr or "")[-3000:])
    result = parse_result(proc.stdout)
    if proc.returncode or result is None:
        raise VariantError(f"{child}: {error_line(proc.stderr, proc.returncode)}",
                           proc.stderr[-3000:])
    return result


def median(values):
    """The median of the numbers among `values` (None when there are none)."""
    numbers = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.median(numbers) if numbers else None


def alternate(variants, run, rounds, *, value=lambda result: result["steps_per_second"],
              log=print, after_round=None):
    """Runs every variant in every round, alternated; the median per variant.

    Args:
        variants: the variants, any hashable values (e.g. `(model, name)`).
        run: `run(variant, round_index)` -> a result dict; raises
            `VariantError` (or any exception) when the variant fails.
        rounds: how many rounds.
        value: the number of a result that the median is taken of.
        log: called with one line per run (None: quiet).
        after_round: optional `after_round(round_index, outcomes)`, e.g. to
            write what is known so far.

    Returns:
        `{variant: {"results": [...], "values": [...], "median": float or
        None, "error": None or one line}}`.
    """
    outcomes = {v: {"results": [], "values": [], "median": None, "error": None}
                for v in variants}
    for round_index in range(rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for variant in order:
            outcome = outcomes[variant]
            if outcome["error"]:
                continue
            try:
                result = run(variant, round_index)
            except Exception as e:  # noqa: BLE001 -- one variant's failure is a result.
                outcome["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
                if log:
                    log(f"round {round_index + 1} {_name(variant)}: FAILED {outcome['error']}")
                continue
            outcome["results"].append(result)
            outcome["values"].append(value(result))
            outcome["median"] = median(outcome["values"])
            if log:
                number = outcome["values"][-1]
                log(f"round {round_index + 1} {_name(variant)}: "
                    + (f"{number:.2f}" if isinstance(number, (int, float)) else str(number)))
        if after_round:
            after_round(round_index, outcomes)
    return outcomes


def _name(variant):
    return ":".join(map(str, variant)) if isinstance(variant, tuple) else str(variant)


# ------------------------------------------------------- timing, in the child
def plan(steps_per_execution, steps):
    """(warm-up steps, timed-fit steps) at `steps_per_execution`: whole calls.

    The warm-up is max(10, spe) steps; the timed fit has one call more than
    `steps` need, since its clock starts at the end of its first call.
    """
    spe = steps_per_execution
    warmup = math.ceil(max(WARMUP_STEPS, spe) / spe) * spe
    calls = math.ceil(steps / spe) + 1
    return warmup, calls * spe


def rate(ends):
    """Steps/s between the first and the last `(steps done, time, ...)` of a fit."""
    if len(ends) < 2 or ends[-1][1] <= ends[0][1]:
        return None
    return (ends[-1][0] - ends[0][0]) / (ends[-1][1] - ends[0][1])


def cores_used(ends):
    """The process' CPU seconds per wall second between the first and the last
    `(steps done, time, CPU time)` of a fit: how many cores it kept busy."""
    if len(ends) < 2 or ends[-1][1] <= ends[0][1]:
        return None
    return (ends[-1][2] - ends[0][2]) / (ends[-1][1] - ends[0][1])


def _materialise(logs):
    """Returns once every value of `logs` is a number: once their step has run."""
    import numpy as np

    for value in (logs or {}).values():
        if isinstance(value, dict):
            _materialise(value)
        else:
            np.asarray(value)


def time_fit(model, x, y, batch_size, steps):
    """Times `model.fit` (compiled) in the steady state: its steps/s and more.

    A warm-up `fit` of `plan(...)[0]` steps, then one of `plan(...)[1]`
    steps (`x`, `y` hold at least that many batches) timed from the end of
    its first call of the compiled step to the end of its last.

    Returns:
        `{"steps_per_second", "first_fit_seconds", "timed_steps", "cores_used"}`
        (the process' CPU seconds per second while timed: under 2 on this
        2-core machine when other work takes CPU, or a step keeps one core).
    """
    import keras

    warmup, timed = plan(model.steps_per_execution, steps)
    ends = []  # (steps done, when the call's step had run, the process' CPU time then)

    class Clock(keras.callbacks.Callback):
        # On JAX, Keras then runs the callbacks in worker threads and its
        # loop dispatches the next steps meanwhile, as in a fit without
        # callbacks (a callback that is not async-safe would make every
        # call wait for its step).  TensorFlow runs them in its loop.
        async_safe = True

        def on_train_batch_end(self, batch, logs=None):
            _materialise(logs)  # Keras' own conversion has waited already.
            ends.append((batch + 1, time.perf_counter(), time.process_time()))

    start = time.perf_counter()
    model.fit(x[:batch_size * warmup], y[:batch_size * warmup], batch_size=batch_size,
              epochs=1, verbose=0, shuffle=False, callbacks=[Clock()])
    first_fit = time.perf_counter() - start
    ends.clear()
    model.fit(x[:batch_size * timed], y[:batch_size * timed], batch_size=batch_size,
              epochs=1, verbose=0, shuffle=False, callbacks=[Clock()])
    ends.sort()  # (Worker threads may append out of order.)
    cores = cores_used(ends)
    return {"steps_per_second": rate(ends), "first_fit_seconds": round(first_fit, 2),
            "timed_steps": ends[-1][0] - ends[0][0],
            "cores_used": cores and round(cores, 2)}
