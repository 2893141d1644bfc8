"""Adaptive early exit: each example leaves at the shallowest confident exit.

Every block of an AL network has a working classifier, its shortcut exit
(`x -> f_1 ... f_i -> b_i -> h_i ... h_1`).  The adaptive path runs the
blocks one at a time; after block i it computes exit i's class
probabilities, and an example whose confidence there reaches the threshold
leaves with them.  The last exit takes every example still left.  The
computation stops at the first block after which no example is left, so a
batch of one confident at exit 1 runs `f_1, b_1, h_1` only.

Confidence (`CONFIDENCES`): `"max_prob"`, the top class probability, or
`"margin"`, the top probability minus the second.  Both lie in [0, 1]:
threshold 0 sends every example out at exit 1, a threshold above 1 none
before the full path.

`calibrate(model, validation_data, max_accuracy_drop=0.005)` picks the
lowest threshold from which on the validation accuracy stays within the
drop of the full path's (the drop bounded above by its standard error, so
that a small or noisy validation set errs towards the full path) and keeps
it in the model (`model.exit_threshold`, saved in its config);
`exit_flops(model)` counts the floating-point operations of every part of
the paths, from which `ExitCalibration` reports the compute saved.

The methods that use it are `ALModel.adaptive_exit`,
`ALModel.predict(x, exit="adaptive")`, `ALModel.evaluate(..., exit="adaptive")`
and the `adaptive` / `adaptive_threshold` signatures of `ALModel.export`.
"""

import dataclasses
import math

import keras
import numpy as np
from keras import ops

from al_keras.core import input_checks

CONFIDENCES = ("max_prob", "margin")
ADAPTIVE = "adaptive"
# The thresholds `calibrate` tries: 0 to 1 in steps of 1/1000, then "never".
_GRID = np.concatenate([np.round(np.linspace(0.0, 1.0, 1001), 3), [np.inf]])


def check_confidence(measure):
    """`measure` if it is one of `CONFIDENCES`, else a ValueError."""
    if measure not in CONFIDENCES:
        raise ValueError(f"Unknown exit confidence {measure!r}; expected one of "
                         f"{CONFIDENCES}.")
    return measure


def check_threshold(threshold):
    """`threshold` as a float (None stays None), else a one-line error."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
        raise TypeError(f"The exit threshold must be a number (a confidence in [0, 1]; "
                        f"above 1: the full path), got {threshold!r}.")
    threshold = float(threshold)
    if math.isnan(threshold) or threshold < 0:
        raise ValueError(f"The exit threshold must be >= 0 (a confidence in [0, 1]; "
                         f"above 1: the full path), got {threshold}.")
    return threshold


def check_model(model, caller):
    """`model` if it is a built `ALModel`, else a one-line error."""
    from al_keras.core.al_model import ALModel

    if not isinstance(model, ALModel):
        raise TypeError(f"{caller}: model must be an al_keras.ALModel (the model with "
                        f"exits), got {type(model).__name__}.")
    if not model.built or input_checks.built_input_shape(model) is None:
        raise ValueError(f"{caller}: model {model.name!r} is not built; build it "
                         "(model.build((None, ...)), or fit it) first.")
    return model


def _check_number(caller, name, value, low, high, meaning):
    """`value` as a float in [low, high] (finite), else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
            low <= value <= high and math.isfinite(value)):
        raise ValueError(f"{caller}: {name} must be a number in [{low}, {high}] "
                         f"({meaning}), got {value!r}.")
    return float(value)


def _check_flops(model, caller, flops):
    """`flops` if it is `exit_flops(model)`'s shape, else a one-line error."""
    try:
        ok = all(len(flops[key]) == model.num_blocks and all(
            not isinstance(f, bool) and isinstance(f, (int, float, np.number))
            and 0 <= f < np.inf for f in flops[key]) for key in ("encoders", "exits"))
    except (TypeError, KeyError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"{caller}: flops must be exit_flops(model), a dict of "
                         f"'encoders' and 'exits' with {model.num_blocks} counts each "
                         f"(one per block), got {flops!r:.200}.")
    return flops


def confidence(probabilities, measure="max_prob"):
    """Confidence of each row of class probabilities `(batch, classes)`."""
    probabilities = ops.cast(probabilities, "float32")
    if measure == "max_prob":
        return ops.max(probabilities, axis=-1)
    top = ops.top_k(probabilities, k=2)[0]
    return top[:, 0] - top[:, 1]


def compiled(function):
    """`function` of tensors, traced once per input signature on TensorFlow
    (`tf.function`); as it is on other backends, where it runs eagerly."""
    if keras.backend.backend() != "tensorflow":
        return function
    import tensorflow as tf

    return tf.function(function, reduce_retracing=True)


def numpy_confidence(probabilities, measure="max_prob"):
    """`confidence` of a NumPy array `(..., classes)`."""
    top = np.sort(np.asarray(probabilities, np.float64), axis=-1)
    return top[..., -1] if measure == "max_prob" else top[..., -1] - top[..., -2]


def adaptive_path(model, inputs, threshold, measure, training=False):
    """The adaptive path of `model` (see the module doc), as TF ops.

    Blocks after the first run inside a `tf.cond` on "is any example of
    the batch left?", nested block by block: in a graph (a `tf.function`,
    a SavedModel) the blocks not needed are not run.  A threshold above 1,
    which no confidence reaches, runs the full path alone (no exit's head
    is computed to be discarded).

    Returns:
        `(probabilities (batch, classes) float32, exit (batch,) int32)`.
    """
    batch = ops.shape(keras.tree.flatten(inputs)[0])[0]
    num_blocks = model.num_blocks

    def full_path():
        return (ops.cast(model(inputs, training=training), "float32"),
                ops.full((batch,), num_blocks, dtype="int32"))

    if isinstance(threshold, (int, float)):
        if threshold > 1:
            return full_path()
        return _adaptive_blocks(model, inputs, threshold, measure, training, batch)
    return ops.cond(threshold > 1, full_path, lambda: _adaptive_blocks(
        model, inputs, threshold, measure, training, batch))


def _adaptive_blocks(model, inputs, threshold, measure, training, batch):
    threshold = ops.cast(threshold, "float32")
    num_blocks = model.num_blocks

    def from_block(index, s, done, probabilities, taken):
        with model.block_device(index):
            s = model.blocks[index](s, training=training)
            prediction = model.blocks[index].bridge(s, training=training)
        exit_probabilities = model.decode(prediction, index + 1)
        leave = ops.logical_not(done)
        if index + 1 < num_blocks:
            leave = ops.logical_and(
                leave, confidence(exit_probabilities, measure) >= threshold)
        probabilities = ops.where(leave[:, None], exit_probabilities, probabilities)
        taken = ops.where(leave, ops.cast(index + 1, "int32"), taken)
        done = ops.logical_or(done, leave)
        if index + 1 == num_blocks:
            return probabilities, taken
        return ops.cond(ops.all(done), lambda: (probabilities, taken),
                        lambda: from_block(index + 1, s, done, probabilities, taken))

    return from_block(0, inputs, ops.zeros((batch,), "bool"),
                      ops.zeros((batch, model.num_classes), "float32"),
                      ops.zeros((batch,), "int32"))


def exit_flops(model):
    """Floating-point operations per example of `model`'s inference paths.

    Counted on a batch of one, with the model's built input shape: on
    TensorFlow by its profiler on the traced graphs (a text model's
    recurrent loops are counted as the profiler sees them: their bodies
    once), on JAX by XLA's cost analysis of the jitted paths.  Both count
    a multiply-add as 2; compare counts of one backend.

    Returns:
        `{"encoders": [F_1, ..., F_L], "exits": [E_1, ..., E_L]}`: `F_i`
        the operations of `f_1 ... f_i`, `E_i` those of exit i's whole path
        (`E_L` is the full path).  Exit i's head (`b_i, h_i ... h_1`) is
        `E_i - F_i`.
    """
    from al_keras.core import keras_compat

    check_model(model, "exit_flops")
    shape = keras_compat.built_input_shape(model)
    if shape is None:
        raise ValueError("exit_flops: build the model (call it on data, fit it, or "
                         "model.build(shape)) first.")
    shape = (1,) + tuple(shape)[1:]
    vocabulary = getattr(model, "vocabulary_size", None)
    if vocabulary and shape[-1] is None:  # The preprocessor's length.
        length = getattr(getattr(model, "preprocessor", None),
                         "_output_sequence_length", None)
        shape = shape[:-1] + (length,)
    dtype = "int32" if vocabulary else "float32"

    def encoders(x, depth):
        for index in range(depth):
            with model.block_device(index):
                x = model.blocks[index](x, training=False)
        return x

    encoder_flops, exit_path_flops = [], []
    for depth in range(1, model.num_blocks + 1):
        encoder_flops.append(_profiled_flops(lambda x: encoders(x, depth), shape, dtype))
        exit_path_flops.append(_profiled_flops(
            lambda x: model(x, training=False, exit=depth), shape, dtype))
    return {"encoders": encoder_flops, "exits": exit_path_flops}


def _profiled_flops(fn, shape, dtype):
    if keras.backend.backend() == "jax":
        import jax

        analysis = jax.jit(fn).lower(jax.ShapeDtypeStruct(shape, dtype)).cost_analysis()
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0] if analysis else {}
        return int((analysis or {}).get("flops", 0))
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants

    spec = tf.TensorSpec(shape, dtype)
    concrete = tf.function(fn, autograph=False).get_concrete_function(spec)
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # The profiler's own TF1 deprecation warnings.
    try:
        return int(tf.compat.v1.profiler.profile(graph=frozen.graph,
                                                 options=options).total_float_ops)
    finally:
        logger.setLevel(level)


def exits_taken(confidences, threshold):
    """Exit (1-based) each example takes: `confidences (n, L)`, a threshold
    (or an array of thresholds `(k,)`, giving `(k, n)`)."""
    confidences = np.asarray(confidences)
    thresholds = np.atleast_1d(np.asarray(threshold, np.float64))
    confident = confidences[None, :, :-1] >= thresholds[:, None, None]
    if confidences.shape[1] == 1:  # One exit: the full path for all.
        taken = np.ones((len(thresholds), confidences.shape[0]), int)
        return taken if np.ndim(threshold) else taken[0]
    # The first confident exit, else the last.
    taken = np.where(confident.any(-1), confident.argmax(-1), confidences.shape[1] - 1) + 1
    return taken if np.ndim(threshold) else taken[0]


def adaptive_cost(flops, taken, threshold=0.0):
    """FLOPs of the adaptive path for examples leaving at `taken` (1-based):
    the encoders up to that exit, and the head of every exit tried; at a
    threshold above 1 (an array of them broadcasts against `taken`'s
    leading axis), the full path's."""
    encoders = np.asarray(flops["encoders"], np.float64)
    heads = np.asarray(flops["exits"], np.float64) - encoders
    cost = encoders[np.asarray(taken) - 1] + np.cumsum(heads)[np.asarray(taken) - 1]
    threshold = np.asarray(threshold, np.float64).reshape(
        np.shape(threshold) + (1,) * (cost.ndim - np.ndim(threshold)))
    return np.where(threshold > 1, float(flops["exits"][-1]), cost)


@dataclasses.dataclass
class ExitCalibration:
    """What `calibrate` found; `to_dict()` is what `train.py` writes.

    Attributes:
        threshold: the lowest threshold from which on the adaptive path is
            within the drop (`inf`: none is, only the full path).
        confidence: the measure (`CONFIDENCES`).
        max_accuracy_drop: the drop allowed.
        drop_bound_z: the standard errors added to a measured drop.
        num_examples: validation examples.
        full_accuracy: the full path's validation accuracy.
        accuracy: the adaptive path's at `threshold`.
        exit_fractions: share of the examples leaving at each exit.
        mean_exit: their mean exit (1 ... L).
        flops_per_example: the adaptive path's mean FLOPs per example.
        full_flops: the full path's FLOPs per example.
        flops_saved: `1 - flops_per_example / full_flops`.
        best_fixed_exit: the shallowest exit within the drop of the full
            path by the same bound (always using it is the simplest
            alternative), with its accuracy, FLOPs and bound.
        table: rows of a threshold sweep: threshold, accuracy, the drop's
            bound, mean exit, FLOPs, FLOPs saved.
        fixed_exits: one row per exit: accuracy, FLOPs and drop bound of
            always using it.
        flops: `exit_flops(model)`, what the FLOPs were computed from.
    """

    threshold: float
    confidence: str
    max_accuracy_drop: float
    drop_bound_z: float
    num_examples: int
    full_accuracy: float
    accuracy: float
    exit_fractions: list
    mean_exit: float
    flops_per_example: float
    full_flops: float
    flops_saved: float
    best_fixed_exit: dict
    table: list
    fixed_exits: list
    flops: dict

    def to_dict(self):
        value = dataclasses.asdict(self)
        value["threshold"] = _json_threshold(self.threshold)
        for row in value["table"]:
            row["threshold"] = _json_threshold(row["threshold"])
        return value


def _json_threshold(threshold):
    return None if math.isinf(threshold) else float(threshold)


def exit_outputs(model, data, caller="exit_outputs"):
    """Every exit's class probabilities and the labels, from one pass over
    `data`: `(probabilities (n, L, C), labels (n,))`.

    `data`: a `tf.data.Dataset` of `(x, y)` batches, a tuple `(x, y)` of
    arrays (read 32 at a time), or an iterable of `(x, y)` batches; checked
    as `fit` checks its data (`input_checks.labelled_batches`), errors
    naming `caller`.
    """
    check_model(model, caller)
    return _exit_outputs(model, input_checks.labelled_batches(model, caller, data), caller)


def _exit_outputs(model, batches, caller):
    """`exit_outputs` of batches from `input_checks.labelled_batches`."""
    from al_keras.core import labels as labels_lib

    all_exits = model._exit_functions.value.get("exit_outputs")
    if all_exits is None:
        def all_exits(x):
            return ops.stack(list(model.call_exits(x).values()), axis=1)
        all_exits = compiled(all_exits)
        model._exit_functions.value["exit_outputs"] = all_exits

    probabilities, labels = [], []
    for x, y in batches:
        probabilities.append(ops.convert_to_numpy(all_exits(x)))
        labels.append(ops.convert_to_numpy(
            ops.argmax(labels_lib.to_one_hot(y, model.num_classes), -1)))
    if not probabilities:
        raise input_checks.InputDataError(f"{caller}: {input_checks.EMPTY}")
    return np.concatenate(probabilities), np.concatenate(labels)


def tradeoff(probabilities, labels, flops, measure="max_prob", thresholds=None):
    """Accuracy, mean exit and FLOPs of the adaptive path at `thresholds`.

    Args:
        probabilities: `(n, L, C)` every exit's probabilities (`exit_outputs`).
        labels: `(n,)` class ids.
        flops: `exit_flops(model)`.
        measure: one of `CONFIDENCES`.
        thresholds: array of thresholds (default: 0 to 1 by 0.001, and inf).

    Returns:
        A dict of arrays over the thresholds: `threshold`, `accuracy`,
        `mean_exit`, `flops`, `exit_fractions` `(k, L)`, and against the
        full path, example by example: `drop` (its accuracy minus the
        adaptive path's) and `drop_error` (the standard error of `drop`,
        `sqrt(b + c + 1) / n` with b and c the examples only one of the two
        paths gets right; the 1 keeps an error of one example where the
        validation set shows no disagreement, so that 200 examples cannot
        vouch for half a point).
    """
    thresholds = _GRID if thresholds is None else np.asarray(thresholds, np.float64)
    correct = probabilities.argmax(-1) == labels[:, None]          # (n, L)
    confidences = numpy_confidence(probabilities, measure)          # (n, L)
    rows = {"threshold": thresholds, "accuracy": [], "mean_exit": [], "flops": [],
            "exit_fractions": [], "drop": [], "drop_error": []}
    num_exits = probabilities.shape[1]
    full = correct[:, -1]
    for start in range(0, len(thresholds), 64):  # (64, n) at a time.
        taken = exits_taken(confidences, thresholds[start:start + 64])
        adaptive = np.take_along_axis(correct[None], taken[..., None] - 1, -1)[..., 0]
        rows["accuracy"].append(adaptive.mean(-1))
        rows["mean_exit"].append(taken.mean(-1))
        rows["flops"].append(adaptive_cost(flops, taken, thresholds[start:start + 64]).mean(-1))
        rows["exit_fractions"].append(np.stack(
            [(taken == e).mean(-1) for e in range(1, num_exits + 1)], -1))
        drop, error = paired_drop(full, adaptive)
        rows["drop"].append(drop)
        rows["drop_error"].append(error)
    return {k: (v if k == "threshold" else np.concatenate(v)) for k, v in rows.items()}


def paired_drop(full, other):
    """Accuracy drop from the full path to another, example by example.

    Args:
        full: `(n,)` bool, the full path right.
        other: `(..., n)` bool, the other path(s) right.

    Returns:
        `(drop, error)`: `(b - c) / n` and its standard error
        `sqrt(b + c + 1) / n`, b and c the examples only the full path and
        only the other gets right (the 1 keeps an error of one example where
        the two never disagree).
    """
    n = full.shape[-1]
    only_full = (full & ~other).sum(-1)
    only_other = (~full & other).sum(-1)
    return (only_full - only_other) / n, np.sqrt(only_full + only_other + 1) / n


def _lowest_safe(bounds, max_accuracy_drop):
    """Index of the lowest threshold from which on every bound is within
    the drop (the last, "never", always is)."""
    within = bounds <= max_accuracy_drop + 1e-12
    within[-1] = True
    # From the last threshold down, the first one outside ends the run.
    outside = np.flatnonzero(~within)
    return int(outside[-1] + 1) if len(outside) else 0


def calibrate(model, validation_data, max_accuracy_drop=0.005, confidence=None,
              drop_bound_z=1.645, flops=None, keep=True):
    """Picks the lowest exit threshold whose accuracy stays within a drop.

    On `validation_data` the adaptive path is measured at every threshold
    from 0 to 1 in steps of 0.001 (and "never", the full path) and compared
    with the full path example by example.  A threshold is within the drop
    when the drop's upper bound, `drop + drop_bound_z * drop_error`
    (`tradeoff`; z = 1.645: one-sided 95%), is at most
    `max_accuracy_drop`; the chosen threshold is the lowest one from which
    on every threshold is within it, so that neither a lucky dip at a low
    threshold nor the noise of a small validation set picks one that gives
    up more than the drop on new data.  `drop_bound_z=0` takes the measured
    drop alone.  Where that threshold would cost more FLOPs than the full
    path (the exits' heads dearer than the blocks they save, as with the
    original CNN's bridges), none is chosen: `threshold` is inf and the
    model keeps the full path.  The same model and data give the same
    threshold.

    Args:
        model: a built `ALModel` (a 1-block one has no early exit: its
            threshold is inf, the full path).
        validation_data: examples not trained on: a `tf.data.Dataset` of
            `(x, y)` batches, a tuple `(x, y)` of arrays (read 32 at a time,
            as `evaluate` reads them), or any iterable of `(x, y)` batches;
            labels as ids or one-hot.  Checked as `fit` checks its data
            (`InputDataError` naming `calibrate`).
        max_accuracy_drop: float in [0, 1]: accuracy (a fraction, 0.005 is
            half a point) that may be given up.
        confidence: one of `CONFIDENCES`; default the model's
            `exit_confidence`.
        drop_bound_z: float >= 0, the standard errors added to the drop.
        flops: `exit_flops(model)` if already counted.
        keep: set `model.exit_threshold` and `model.exit_confidence` (saved
            with the model; the default of `predict(x, exit="adaptive")` and
            of the exported `adaptive` signature).

    Returns:
        An `ExitCalibration`.
    """
    caller = "calibrate"
    check_model(model, caller)
    max_accuracy_drop = _check_number(caller, "max_accuracy_drop", max_accuracy_drop, 0, 1,
                                      "a fraction of accuracy: 0.005 is half a point")
    if isinstance(drop_bound_z, bool) or not isinstance(
            drop_bound_z, (int, float, np.number)) or not 0 <= drop_bound_z < np.inf:
        raise ValueError(f"{caller}: drop_bound_z must be a number >= 0, not inf (standard "
                         "errors added to the accuracy drop; 1.645: one-sided 95%), got "
                         f"{drop_bound_z!r}.")
    measure = check_confidence(confidence or model.exit_confidence)
    if flops is not None:
        _check_flops(model, caller, flops)
    # The data's static checks before the FLOPs are counted (seconds).
    batches = input_checks.labelled_batches(model, caller, validation_data)
    flops = exit_flops(model) if flops is None else flops
    probabilities, labels = _exit_outputs(model, batches, caller)
    sweep = tradeoff(probabilities, labels, flops, measure)
    full_accuracy = float(sweep["accuracy"][-1])  # Threshold inf: the full path.
    chosen = _lowest_safe(sweep["drop"] + drop_bound_z * sweep["drop_error"],
                          max_accuracy_drop)
    full_flops = float(flops["exits"][-1])
    if sweep["flops"][chosen] >= full_flops:  # Heads dearer than the blocks saved.
        chosen = len(sweep["threshold"]) - 1
    correct = probabilities.argmax(-1) == labels[:, None]
    drop, error = paired_drop(correct[:, -1], correct.T)  # Each exit alone.
    fixed = [{"exit": e + 1, "accuracy": float(correct[:, e].mean()),
              "flops": float(flops["exits"][e]),
              "drop_bound": float(drop[e] + drop_bound_z * error[e])}
             for e in range(model.num_blocks)]
    best_fixed = next(row for row in fixed
                      if row["drop_bound"] <= max_accuracy_drop + 1e-12 or row is fixed[-1])
    shown = np.unique(np.concatenate([np.arange(0, 1001, 25), [min(chosen, 1000)]]))
    table = [{"threshold": float(sweep["threshold"][i]),
              "accuracy": float(sweep["accuracy"][i]),
              "drop_bound": float(sweep["drop"][i] + drop_bound_z * sweep["drop_error"][i]),
              "mean_exit": float(sweep["mean_exit"][i]),
              "flops": float(sweep["flops"][i]),
              "flops_saved": 1.0 - float(sweep["flops"][i]) / full_flops}
             for i in list(shown) + [len(sweep["threshold"]) - 1]]
    result = ExitCalibration(
        threshold=float(sweep["threshold"][chosen]), confidence=measure,
        max_accuracy_drop=float(max_accuracy_drop), drop_bound_z=float(drop_bound_z),
        num_examples=int(len(labels)),
        full_accuracy=full_accuracy, accuracy=float(sweep["accuracy"][chosen]),
        exit_fractions=[float(f) for f in sweep["exit_fractions"][chosen]],
        mean_exit=float(sweep["mean_exit"][chosen]),
        flops_per_example=float(sweep["flops"][chosen]), full_flops=full_flops,
        flops_saved=1.0 - float(sweep["flops"][chosen]) / full_flops,
        best_fixed_exit=best_fixed, table=table, fixed_exits=fixed, flops=flops)
    if keep:  # "Never" (inf) is the uncalibrated default, None.
        model.exit_threshold = None if math.isinf(result.threshold) else result.threshold
        model.exit_confidence = measure
    return result


def describe_saving(flops_saved):
    """"31.2% fewer FLOPs" / "4.0% more FLOPs" for a `flops_saved` fraction."""
    return (f"{flops_saved:.1%} fewer FLOPs" if flops_saved >= 0
            else f"{-flops_saved:.1%} more FLOPs")


def evaluate_at(model, data, threshold, measure, flops):
    """Accuracy, mean exit and FLOPs saved of the adaptive path at one
    threshold on `data` (e.g. the test set, after calibrating on another):
    data as `calibrate` takes it, `threshold` >= 0 (inf: the full path),
    `measure` one of `CONFIDENCES`, `flops` `exit_flops(model)`."""
    caller = "evaluate_at"
    check_model(model, caller)
    threshold = check_threshold(threshold)
    if threshold is None:
        raise TypeError(f"{caller}: the exit threshold must be a number (a confidence in "
                        "[0, 1]; above 1: the full path), got None.")
    check_confidence(measure)
    _check_flops(model, caller, flops)
    probabilities, labels = exit_outputs(model, data, caller)
    sweep = tradeoff(probabilities, labels, flops, measure, thresholds=[threshold, np.inf])
    return {"accuracy": float(sweep["accuracy"][0]),
            "full_accuracy": float(sweep["accuracy"][1]),
            "accuracy_drop": float(sweep["accuracy"][1] - sweep["accuracy"][0]),
            "mean_exit": float(sweep["mean_exit"][0]),
            "exit_fractions": [float(f) for f in sweep["exit_fractions"][0]],
            "flops_saved": 1.0 - float(sweep["flops"][0]) / float(flops["exits"][-1])}
