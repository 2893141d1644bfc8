"""How an `ALModel` trains: one tape and one optimizer per local loss.

`LocalTrainingMixin` holds `ALModel`'s training step.  For block i, with
`s_0 = x` and `t_0 = one_hot(y)`:

* `_label_side`: `t_i = g_i(sg(t_{i-1}))`, the auto-encoder loss
  `MSE(h_i(t_i), t_{i-1})` (for `h_1`, `output_loss`), trains g_i and h_i;
* `_input_side`: `s_i = f_i(sg(s_{i-1}))`, the associated loss
  `MSE(b_i(s_i), sg(t_i))`, trains f_i and b_i.

`train_step` runs them block by block, each under its own `tf.GradientTape`
(`_local_gradients`), so no gradient crosses a block boundary; a pipelined
model hands the step to `al_keras.distribute.pipeline.train_step`, which
uses the same `_train_block`.
"""

import keras
import tensorflow as tf

from al_keras import distribute as distribute_lib
from al_keras.core import labels as labels_lib
from al_keras.core import nonfinite
from al_keras.distribute import pipeline as pipeline_lib


class LocalTrainingMixin:
    """`ALModel`'s training: local losses, their tapes and updates, `fit`."""

    def _record_losses(self, assoc_losses, ae_losses, weights=None,
                       applied=None):
        """Updates the per-block loss trackers (`weights`: one per block).

        `applied`: with `on_nonfinite_loss="skip"`, per block whether its
        associated and its auto-encoder update were made (a bool pair); a
        skipped update's loss is left out of its mean and counted in
        `skipped_updates`.
        """
        weights = weights or [None] * self.num_blocks
        assoc_weights = ae_weights = weights
        if applied is not None:
            assoc_applied, ae_applied = [a[0] for a in applied], [a[1] for a in applied]
            assoc_losses, assoc_weights = _kept(assoc_losses, weights, assoc_applied)
            ae_losses, ae_weights = _kept(ae_losses, weights, ae_applied)
            self.skipped_updates_tracker.update_state(tf.reduce_sum(
                1.0 - tf.cast(tf.stack(assoc_applied + ae_applied), "float32")))
        for tracker, value, weight in zip(
                self.assoc_loss_trackers, assoc_losses, assoc_weights):
            tracker.update_state(value, sample_weight=weight)
        for tracker, value, weight in zip(
                self.ae_loss_trackers, ae_losses, ae_weights):
            tracker.update_state(value, sample_weight=weight)

    def _label_side(self, index, t_prev, sample_weight, training):
        """Runs g_i, h_i; returns t_i and the weighted auto-encoder loss.

        No gradient reaches `t_prev` (that is block i-1's business).
        """
        block = self.blocks[index]
        t_prev = tf.stop_gradient(t_prev)
        t = block.label_encoder(t_prev, training=training)
        reconstruction = block.label_decoder(t, training=training)
        target = tf.cast(t_prev, "float32")
        reconstruction = tf.cast(reconstruction, "float32")
        if index == 0 and self.output_loss == "categorical_crossentropy":
            per_example = keras.losses.categorical_crossentropy(
                target, reconstruction
            )
        else:
            per_example = keras.losses.mean_squared_error(target, reconstruction)
        loss = _reduce(per_example, sample_weight)
        loss += _regularization(block.label_encoder, block.label_decoder)
        return t, loss * self.loss_weights[index]

    def _input_side(self, index, s_prev, t, sample_weight, training):
        """Runs f_i, b_i; returns s_i, b_i(s_i) and the associated loss.

        No gradient reaches `s_prev` nor the target `t` (g_i's output).
        """
        block = self.blocks[index]
        s = block.encoder(tf.stop_gradient(s_prev), training=training)
        prediction = block.bridge(s, training=training)
        per_example = keras.losses.mean_squared_error(
            tf.cast(tf.stop_gradient(t), "float32"),
            tf.cast(prediction, "float32"),
        )
        loss = _reduce(per_example, sample_weight)
        loss += _regularization(block.encoder, block.bridge)
        return s, prediction, loss * self.loss_weights[index]

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not self.built:
            # Keras (without a distribution strategy) builds a model on its
            # first traced step; the block optimizers are built with it.
            self.build(x.shape)
        self._follow_learning_rate()
        if self._placement.pipelined:
            pipeline_lib.train_step(self, x, y, sample_weight)
            self._count_step(x)
            return self.get_metrics_result()
        if self._placement.places_devices:
            return self._placed_train_step(x, y, sample_weight)
        t_prev = self._targets(y)

        # Label side first (cheap): t_i are the targets of the input side.
        # Its updates are applied last, so that the metrics below decode
        # with the h_i that produced this step's losses.
        targets, ae_losses, ae_grads = [], [], []
        for index in range(self.num_blocks):
            with self._placement.block_scope(index):
                t, loss, grads = self._label_gradients(
                    index, t_prev, sample_weight, self.ae_optimizers[index])
            targets.append(t)
            ae_losses.append(loss)
            ae_grads.append(grads)
            t_prev = t

        # Input side: one tape per block.  Block i+1 gets the s_i computed
        # before block i's update, and starts only once block i's gradients
        # exist: a traced step then never holds two blocks' activations for
        # their backward passes at once (peak memory ~ one block's).
        s, assoc_losses, assoc_applied = x, [], []
        for index, optimizer in enumerate(self.assoc_optimizers):
            with self._placement.block_scope(index):
                s, prediction, loss, grads = self._input_gradients(
                    index, s, targets[index], sample_weight, optimizer)
                assoc_applied.append(self._apply(
                    optimizer, grads, self.blocks[index].input_side_variables, loss))
            s = _after(grads, s)
            assoc_losses.append(loss)

        y_pred = self._decode(prediction, self.num_blocks)
        applied = []
        for index, (optimizer, grads) in enumerate(
                zip(self.ae_optimizers, ae_grads)):
            with self._placement.block_scope(index):
                applied.append(tf.stack([assoc_applied[index], self._apply(
                    optimizer, grads, self.blocks[index].label_side_variables,
                    ae_losses[index])]))
        self._count_step(x)

        self._record_losses(assoc_losses, ae_losses, applied=(
            applied if self.on_nonfinite_loss == "skip" else None))
        return self._step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    def _placed_train_step(self, x, y, sample_weight):
        """The step of blocks placed on devices, not pipelined: block by
        block, each block's whole local step on its device (one XLA
        computation there when compiled), `s_i` and `t_i` handed between
        the devices in between.  It computes what `train_step` computes:
        block i+1 gets the `s_i`, `t_i` from before block i's updates, and
        the metrics decode with the `h_i` read at the start of the step."""
        decoders = pipeline_lib.decoder_weights(self)
        s, t = x, self._targets(y)
        assoc_losses, ae_losses, applied = [], [], []
        for index in range(self.num_blocks):
            with self._placement.block_scope(index):
                s, t, prediction, assoc, ae, block_applied = (
                    self._placement.block_step(self, index)(s, t, sample_weight))
            assoc_losses.append(assoc)
            ae_losses.append(ae)
            applied.append(block_applied)
        with self._placement.device(self.num_blocks - 1):
            y_pred = pipeline_lib.decode(self, prediction, decoders)
        self._count_step(x)
        self._record_losses(assoc_losses, ae_losses, applied=(
            applied if self.on_nonfinite_loss == "skip" else None))
        return self._step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    def _count_step(self, x):
        """Adds 1 to `model.optimizer.iterations`, once the batch `x` is read.

        (Without XLA a step whose input fails, e.g. a data check in the
        pipeline, would still run an increment that depends on nothing.)
        """
        with tf.control_dependencies([x]):
            self.optimizer.iterations.assign_add(1)

    def _apply(self, optimizer, grads, variables, loss):
        """`optimizer.apply(grads, variables)`; returns whether it applied.

        With `on_nonfinite_loss="skip"` a non-finite loss or gradient skips
        the update (the optimizer's state and iterations stay as they are).
        """
        if self.on_nonfinite_loss != "skip":
            optimizer.apply(grads, variables)
            return tf.constant(True)
        finite = nonfinite.all_finite(loss, grads)

        def apply():
            optimizer.apply(grads, variables)
            return tf.constant(True)

        return tf.cond(finite, apply, lambda: tf.constant(False))

    def _targets(self, y):
        """One-hot targets of labels `y`.  The in-step range check is left out
        under XLA, which ignores it (fit/evaluate check the data before)."""
        return labels_lib.to_one_hot(y, self.num_classes,
                                     validate=not self.jit_compile)

    def _label_gradients(self, index, t_prev, sample_weight, optimizer):
        """t_i, the auto-encoder loss and its gradients for g_i, h_i.

        Under a `tf.distribute` strategy the gradients are those of
        loss / replicas (the optimizer sums them over the replicas); the
        loss returned is the replica's unscaled one.
        """
        (t, loss), grads = self._local_gradients(
            lambda: self._label_side(index, t_prev, sample_weight, True),
            optimizer, self.blocks[index].label_side_variables,
            "auto-encoder", index)
        return t, loss, grads

    def _input_gradients(self, index, s_prev, t, sample_weight, optimizer):
        """s_i, b_i(s_i), the associated loss and its gradients for f_i, b_i."""
        (s, prediction, loss), grads = self._local_gradients(
            lambda: self._input_side(index, s_prev, t, sample_weight, True),
            optimizer, self.blocks[index].input_side_variables,
            "associated", index)
        return s, prediction, loss, grads

    def _local_gradients(self, local_part, optimizer, variables, family,
                         index):
        """Runs `local_part()` under its own tape; returns its outputs (the
        last is the loss) and the gradients for `variables`.

        Its ops are named `block_<i>_<family>/...` (gradients
        `gradient_tape/block_<i>_<family>/...`), e.g. `block_2_associated`,
        as profiles and traced graphs show them.
        """
        scope = f"block_{index + 1}_{family.replace('-', '_')}"
        with tf.name_scope(scope), tf.GradientTape() as tape:
            outputs = local_part()
            scaled = optimizer.scale_loss(
                outputs[-1] / distribute_lib.replicas_in_sync())
        with tf.name_scope(scope):
            grads = tape.gradient(scaled, variables)
        _check_gradients(grads, variables, family, index)
        return outputs, grads

    def _train_block(self, index, s_prev, t_prev, sample_weight,
                     optimizers=None):
        """Block `index`'s whole local step: both losses, both updates.

        Args:
            optimizers: `(auto-encoder optimizer, associated optimizer)`;
                default the model's own for that block.

        Returns:
            `(s_i, t_i, b_i(s_i), assoc_loss, ae_loss, applied)`, `applied`
            telling whether the associated and the auto-encoder update
            were made (a bool pair; see `_apply`).
        """
        ae_optimizer, assoc_optimizer = optimizers or (
            self.ae_optimizers[index], self.assoc_optimizers[index])
        block = self.blocks[index]
        t, ae_loss, ae_grads = self._label_gradients(
            index, t_prev, sample_weight, ae_optimizer)
        s, prediction, assoc_loss, grads = self._input_gradients(
            index, s_prev, t, sample_weight, assoc_optimizer)
        applied = tf.stack([
            self._apply(assoc_optimizer, grads, block.input_side_variables, assoc_loss),
            self._apply(ae_optimizer, ae_grads, block.label_side_variables, ae_loss)])
        return s, t, prediction, assoc_loss, ae_loss, applied

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`; a pipelined model drains after each epoch, and
        a non-finite local loss stops it (see `compile`).  Under a
        `RayPipeline` the stage processes make the training steps."""
        callbacks = list(callbacks or [])
        if self._placement.pipelined:
            callbacks.insert(0, pipeline_lib.DrainAtEpochEnd(self))
        strategy = self._placement.strategy
        if getattr(strategy, "remote_stages", False):
            if not self.built or not self.compiled:
                raise ValueError("Under a RayPipeline, build and compile the model "
                                 "before fit (al_keras.models.get builds it).")
            callbacks.insert(0, strategy.start_fit(self))
        if self.on_nonfinite_loss == "stop":
            callbacks.insert(0, nonfinite.StopOnNonFiniteLoss())
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def _follow_learning_rate(self):
        """Block optimizers follow a float learning rate of `model.optimizer`.

        (A schedule is cloned into each block optimizer instead.)
        """
        base = self.optimizer.learning_rate
        if not isinstance(base, keras.Variable):
            return
        # A tensor, not the variable: an optimizer given a (callable) variable
        # would adopt it as its own.
        base = tf.convert_to_tensor(base)
        for optimizer in self.assoc_optimizers:
            optimizer.learning_rate = base
        for optimizer in self.ae_optimizers:
            optimizer.learning_rate = base * self.ae_lr_multiplier

    def local_losses(self, x, y, sample_weight=None, training=False):
        """Every block's local losses on one batch, computed as `fit` does.

        Args:
            x: input batch.
            y: labels (class ids or one-hot).
            sample_weight: optional per-example weights.
            training: bool, passed to the layers.

        Returns:
            `(assoc_losses, ae_losses, predictions)`: lists with one entry per
            block: the weighted associated and auto-encoder losses (scalars,
            float32) and the bridge outputs `b_i(s_i)`.
        """
        t, s = self._targets(y), x
        assoc_losses, ae_losses, predictions = [], [], []
        for index in range(self.num_blocks):
            t, ae_loss = self._label_side(index, t, sample_weight, training)
            s, prediction, assoc_loss = self._input_side(
                index, s, t, sample_weight, training
            )
            assoc_losses.append(assoc_loss)
            ae_losses.append(ae_loss)
            predictions.append(prediction)
        return assoc_losses, ae_losses, predictions


def _reduce(per_example, sample_weight):
    """Mean over the batch, weighted like Keras' sum_over_batch_size."""
    if sample_weight is None:
        return tf.reduce_mean(per_example)
    weight = tf.cast(tf.reshape(sample_weight, tf.shape(per_example)), "float32")
    return tf.reduce_sum(per_example * weight) / tf.cast(
        tf.size(per_example), "float32"
    )

def _kept(losses, weights, applied):
    """Losses and tracker weights leaving out the updates not `applied`."""
    kept = [tf.cast(a, "float32") for a in applied]
    return ([tf.where(a, v, 0.0) for a, v in zip(applied, losses)],
            [k if w is None else w * k for k, w in zip(kept, weights)])

def _after(tensors, value):
    """`value`, available only once every tensor of `tensors` is computed."""
    with tf.control_dependencies([t for t in tensors if t is not None]):
        return tf.identity(value)

def _regularization(*layers):
    losses = [tf.cast(loss, "float32") for layer in layers for loss in layer.losses]
    return tf.add_n(losses) if losses else 0.0

def _check_gradients(grads, variables, family, index):
    missing = [v.path for g, v in zip(grads, variables) if g is None]
    if missing:
        raise ValueError(
            f"Block {index + 1}'s {family} loss has no gradient for "
            f"{missing}: every trainable variable of the part it trains must "
            "take part in that loss."
        )
