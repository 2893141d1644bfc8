"""Inference and exits of an `ALModel`.

The full path is `x -> f_1 ... f_L -> b_L -> h_L ... h_1`; the exit at block
i is the shortcut `x -> f_1 ... f_i -> b_i -> h_i ... h_1`.  `ExitsMixin`
gives `call(x, exit=i)`, `call_exits` / `evaluate_exits` (every exit from
one pass of the encoders), `predict` / `evaluate` with `exit=` (an exit,
or `"adaptive"`: see `early_exit.py`), and the SavedModel export with one
signature per exit and the adaptive ones.
"""

import contextlib
import numbers

import keras
from keras import ops

from al_keras.core import early_exit, input_checks
from al_keras.core import labels as labels_lib
from al_keras.core import step as step_lib


class ExitsMixin:
    """`ALModel`'s inference paths: the full path and every block's exit."""

    def _check_exit(self, exit, adaptive=False):
        if exit is None:
            return self.num_blocks
        if adaptive and exit == early_exit.ADAPTIVE:
            return exit
        if isinstance(exit, bool) or not isinstance(exit, numbers.Integral):
            raise TypeError(f"`exit` must be an int in [1, {self.num_blocks}]"
                            + (' or "adaptive"' if adaptive else "") + f", got {exit!r}.")
        exit = int(exit)  # NumPy ints too.
        if not 1 <= exit <= self.num_blocks:
            raise ValueError(
                f"`exit` must be in [1, {self.num_blocks}] (this model has "
                f"{self.num_blocks} blocks), got {exit}."
            )
        return exit

    def call(self, inputs, training=None, exit=None):
        exit = self._check_exit(exit)
        s = inputs
        for index, block in enumerate(self.blocks[:exit]):
            with self.block_device(index):
                s = block(self.hand_to_block(index, s), training=training)
        with self.block_device(exit - 1):
            prediction = self.blocks[exit - 1].bridge(s, training=training)
        return self.decode(prediction, exit)

    def call_exits(self, inputs, exits=None, training=False):
        """Class probabilities at several exits, from one pass of the encoders.

        `model.call_exits(x, exits=[1, 3])[1]` equals `model(x, exit=1)`, but
        `f_1 ... f_3` run once for both exits instead of once per exit.

        Args:
            inputs: input batch.
            exits: ints in `[1, num_blocks]`; default every exit.
            training: bool.

        Returns:
            A dict exit -> class probabilities `(batch, num_classes)`.
        """
        exits = sorted({self._check_exit(e) for e in (
            exits if exits is not None else range(1, self.num_blocks + 1))})
        s, outputs = inputs, {}
        for index, block in enumerate(self.blocks[:exits[-1]]):
            with self.block_device(index):
                s = block(self.hand_to_block(index, s), training=training)
                if index + 1 in exits:
                    prediction = block.bridge(s, training=training)
            if index + 1 in exits:
                outputs[index + 1] = self.decode(prediction, index + 1)
        return outputs

    def adaptive_exit(self, inputs, threshold=None, confidence=None, training=False):
        """Each example's class probabilities at its shallowest confident exit.

        The blocks run one at a time; after block i, an example whose
        confidence at exit i reaches `threshold` leaves with exit i's
        probabilities, and the last exit takes the rest.  In a graph (a
        `tf.function`, the exported `adaptive` signature) the blocks after
        the last one any example of the batch needs are not run.

        Args:
            inputs: input batch.
            threshold: float >= 0; default `self.exit_threshold` (set by
                `al_keras.exits.calibrate`), and without one the full path.
                0 sends every example out at exit 1, above 1 none early.
            confidence: `"max_prob"` (the top probability) or `"margin"`
                (top minus second); default `self.exit_confidence`.
            training: bool.

        Returns:
            `(probabilities (batch, num_classes), exit (batch,) int32)`,
            the exit 1-based.
        """
        threshold, measure = self._adaptive_settings(threshold, confidence)
        return early_exit.adaptive_path(self, inputs, threshold, measure, training=training)

    def _adaptive_settings(self, threshold=None, confidence=None):
        """`(threshold, confidence)` checked, defaulting to the model's; an
        uncalibrated model's threshold is inf (the full path)."""
        threshold = early_exit.check_threshold(
            self.exit_threshold if threshold is None else threshold)
        return (float("inf") if threshold is None else threshold,
                early_exit.check_confidence(confidence or self.exit_confidence))

    def evaluate_exits(self, data, exits=None):
        """Accuracy at several exits in one pass over `data` (`call_exits`).

        Where `evaluate(data, exit=i)` runs the model once per exit, this
        runs the encoders once for all of them; the accuracies are the same.

        Args:
            data: a `tf.data.Dataset` (or other iterable) of `(x, y)`
                batches, labels as class ids or one-hot rows.
            exits: ints in `[1, num_blocks]`; default every exit.

        Returns:
            A dict exit -> accuracy (float).
        """
        exits = tuple(sorted({self._check_exit(e) for e in (
            exits if exits is not None else range(1, self.num_blocks + 1))}))
        key = ("evaluate_exits", exits)
        count = self._exit_functions.value.get(key)
        if count is None:
            def count(x, y):
                ids = ops.argmax(labels_lib.to_one_hot(y, self.num_classes), -1)
                return ops.stack([
                    ops.sum(ops.cast(ops.argmax(p, -1) == ids, "int32"))
                    for p in self.call_exits(x, exits).values()])
            count = early_exit.compiled(count)
            self._exit_functions.value[key] = count
        correct, total = 0, 0
        for x, y in input_checks.labelled_batches(self, "evaluate_exits", data):
            correct += ops.convert_to_numpy(count(x, y)).astype("int64")
            total += int(ops.shape(x)[0])
        if not total:
            raise input_checks.InputDataError(f"evaluate_exits: {input_checks.EMPTY}")
        return {exit: float(c) / total for exit, c in zip(exits, correct)}

    def decode(self, prediction, exit):
        """Class probabilities from block `exit`'s bridge output `prediction`
        (`h_exit ... h_1`, each on its block's device)."""
        return self.scores(self.decode_through(prediction, reversed(range(exit))))

    def decode_through(self, t, indices):
        """`t` decoded by the h_i of blocks `indices`, in that order (each on
        its block's device)."""
        for index in indices:
            with self.block_device(index):
                t = step_lib.decode([self.blocks[index]], self.hand_to_block(index, t))
        return t

    def scores(self, decoded):
        """Class probabilities from the output of h_1 (`step.scores`)."""
        return step_lib.scores(decoded, self.output_loss)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def evaluate_step(self, data):
        """The test step on any backend (the trainers' `test_step` runs it):
        the local losses and the metrics of the active exit."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        assoc_losses, ae_losses, predictions = self.local_losses(
            x, y, sample_weight, training=False
        )
        if isinstance(self._active_exit, tuple):  # ("adaptive", threshold, confidence)
            y_pred = self.adaptive_exit(x, *self._active_exit[1:])[0]
        else:
            exit = self._check_exit(self._active_exit)
            y_pred = self.decode(predictions[exit - 1], exit)
        self.record_losses(assoc_losses, ae_losses)
        return self.step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    def inference_step(self, data):
        """The predict step on any backend (the trainers' `predict_step`):
        the active exit's probabilities (and exits, for the adaptive path)."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(self._active_exit, tuple):  # ("adaptive", threshold, confidence)
            probabilities, taken = self.adaptive_exit(x, *self._active_exit[1:])
            return {"probabilities": probabilities, "exit": taken}
        return self(x, training=False, exit=self._active_exit)

    @contextlib.contextmanager
    def _exit_scope(self, exit, function_attr, threshold=None, confidence=None):
        """Runs Keras' predict/evaluate loop with the shortcut path `exit`
        (or the adaptive path, at `threshold` and `confidence`)."""
        exit = self._check_exit(exit, adaptive=True)
        if exit != early_exit.ADAPTIVE and (threshold is not None or confidence is not None):
            raise ValueError('`threshold` and `confidence` are for exit="adaptive", '
                             f"not exit={exit!r}.")
        if exit == early_exit.ADAPTIVE:
            exit = (exit, *self._adaptive_settings(threshold, confidence))
        elif exit == self.num_blocks:
            yield
            return
        key = (function_attr, exit)
        saved = getattr(self, function_attr)
        setattr(self, function_attr, self._exit_functions.value.get(key))
        self._active_exit = exit
        try:
            yield
        finally:
            self._exit_functions.value[key] = getattr(self, function_attr)
            setattr(self, function_attr, saved)
            self._active_exit = None

    def predict(self, x, *args, exit=None, threshold=None, confidence=None, **kwargs):
        """`keras.Model.predict`; `exit=i` uses block i's shortcut path.

        `exit="adaptive"`: each example leaves at its shallowest confident
        exit (`adaptive_exit`; `threshold` and `confidence` default to the
        model's calibrated ones); returns `{"probabilities": (n, classes),
        "exit": (n,) int32}`.
        """
        with self._exit_scope(exit, "predict_function", threshold, confidence):
            return super().predict(x, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, exit=None, threshold=None, confidence=None,
                 **kwargs):
        """`keras.Model.evaluate`; `exit=i` measures block i's shortcut path,
        `exit="adaptive"` the adaptive path (`threshold`, `confidence` as in
        `predict`).

        The local losses are those of the whole model either way.
        """
        with self._exit_scope(exit, "test_function", threshold, confidence):
            return super().evaluate(x, y, *args, **kwargs)

    def export(self, filepath, format="tf_saved_model", verbose=None,
               input_signature=None, overwrite=False, **kwargs):
        """Writes a SavedModel for serving without al_keras.

        Signatures: `serving_default` (and `serve`), the full-path class
        probabilities; `exit_1` ... `exit_L`, the shortcut paths.  Each takes
        one float tensor `inputs` and returns `{"probabilities": ...}`.
        `adaptive` (`inputs`) and `adaptive_threshold` (`inputs`, a float
        scalar `threshold`) run the adaptive path (`adaptive_exit`: the
        blocks no example needs are not run) at the model's calibrated
        threshold (`exit_threshold`; without one, the full path) or the
        one given, and return `{"probabilities": ..., "exit": ...}`.  An
        existing `filepath` is replaced only with `overwrite=True`.  Other
        formats are handed to `keras.Model.export`.
        """
        from al_keras.core import export as export_lib

        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose,
                                  input_signature=input_signature, **kwargs)
        endpoints = {"serve": lambda x: self(x, training=False)}
        for exit in range(1, self.num_blocks + 1):
            endpoints[f"exit_{exit}"] = (
                lambda x, exit=exit: self(x, training=False, exit=exit)
            )
        default, measure = self._adaptive_settings()

        def adaptive(x, threshold):
            probabilities, taken = early_exit.adaptive_path(self, x, threshold, measure)
            return {"probabilities": probabilities, "exit": taken}

        endpoints[early_exit.ADAPTIVE] = export_lib.Endpoint(lambda x: adaptive(x, default))
        endpoints["adaptive_threshold"] = export_lib.Endpoint(
            adaptive, extra_inputs=[export_lib.scalar_spec("threshold")])
        export_lib.export_saved_model(
            self, filepath, endpoints, input_signature=input_signature,
            overwrite=overwrite, verbose=verbose,
        )
