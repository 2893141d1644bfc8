"""ALModel's trainer on TensorFlow: one `tf.GradientTape` per local loss.

`train_step` is the plain, sequential AL step: block by block, the label
side's and then the input side's loss (`al_keras/core/step.py`), each under
its own tape (`_local_gradients`), so no gradient crosses a block boundary.
It knows nothing of devices: an executor (`al_keras.distribute`) runs
`train_block` on its devices in a train function of its own, made with
`train_function(model, step)` here.
"""

import contextlib

import keras
import tensorflow as tf

from al_keras.core import keras_compat, nonfinite


class TensorFlowTrainer:
    """`ALModel`'s training step and train function on TensorFlow."""

    def _eager_scope(self):
        return tf.init_scope()

    def _block_scope(self, index):
        """Block `index`'s device (its executor's) and name scope `block_<i>`."""
        scope = contextlib.ExitStack()
        scope.enter_context(self.block_device(index))
        scope.enter_context(tf.name_scope(f"block_{index + 1}"))
        return scope

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not self.built:
            # Keras (without a distribution strategy) builds a model on its
            # first traced step; the block optimizers are built with it.
            self.build(x.shape)
        self.follow_learning_rate()
        t_prev = self.targets(y)

        # Label side first (cheap): t_i are the targets of the input side.
        # Its updates are applied last, so that the metrics below decode
        # with the h_i that produced this step's losses.
        targets, ae_losses, ae_grads = [], [], []
        for index in range(self.num_blocks):
            with self._block_scope(index):
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
            with self._block_scope(index):
                s, prediction, loss, grads = self._input_gradients(
                    index, s, targets[index], sample_weight, optimizer)
                assoc_applied.append(self._apply(
                    optimizer, grads, self.blocks[index].input_side_variables, loss))
            s = _after(grads, s)
            assoc_losses.append(loss)

        y_pred = self.decode(prediction, self.num_blocks)
        applied = []
        for index, (optimizer, grads) in enumerate(
                zip(self.ae_optimizers, ae_grads)):
            with self._block_scope(index):
                applied.append(tf.stack([assoc_applied[index], self._apply(
                    optimizer, grads, self.blocks[index].label_side_variables,
                    ae_losses[index])]))
        self.count_step(x)
        self.record_losses(assoc_losses, ae_losses, applied=(
            applied if self.on_nonfinite_loss == "skip" else None))
        return self.step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    def test_step(self, data):
        return self.evaluate_step(data)

    def predict_step(self, data):
        return self.inference_step(data)

    def train_block(self, index, s_prev, t_prev, sample_weight=None,
                    optimizers=None):
        """Block `index`'s whole local step: both losses, both updates.

        What an executor runs on block `index`'s device.

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

    def count_step(self, x):
        """Adds 1 to `model.optimizer.iterations`, once the batch `x` is read.

        (Without XLA a step whose input fails, e.g. a data check in the
        pipeline, would still run an increment that depends on nothing.)
        """
        with tf.control_dependencies([x]):
            self.optimizer.iterations.assign_add(1)

    def follow_learning_rate(self):
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

    def step_logs(self, logs):
        """The step's logs, as Keras can reduce them over the replicas
        (`keras_compat.replica_logs`)."""
        return keras_compat.replica_logs(self, logs)

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
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.name_scope(scope), tf.GradientTape() as tape:
            outputs = local_part()
            scaled = optimizer.scale_loss(outputs[-1] / replicas)
        with tf.name_scope(scope):
            grads = tape.gradient(scaled, variables)
            # An embedding's gradient comes as IndexedSlices, whose repeated
            # rows Keras' TensorFlow optimizers square one by one (Adam's
            # second moment then differs from Adam's, and from JAX's dense
            # gradient): dense, every optimizer is exactly itself.
            grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices)
                     else g for g in grads]
        nonfinite.check_gradients(grads, variables, family, index)
        return outputs, grads


def _after(tensors, value):
    """`value`, available only once every tensor of `tensors` is computed."""
    with tf.control_dependencies([t for t in tensors if t is not None]):
        return tf.identity(value)


def train_function(model, train_step):
    """Keras' train function of `model` around `train_step(data)`: its calls
    run `steps_per_execution` steps, or the fewer that remain of the epoch
    (`epoch_steps`), or fewer where the data ends.

    The steps run in one `tf.while_loop` whose bound is a tensor argument,
    so calls of different lengths share one trace.  A step runs only on a
    batch that was read (`get_next_as_optional`): a call on exhausted data
    changes nothing (not even an optimizer's step count) and ends the epoch.
    An executor passes its own `train_step` (a placed or pipelined step).
    """
    position = model._epoch_position()

    @tf.autograph.experimental.do_not_convert
    def one_step_on_data(data):
        outputs = model.distribute_strategy.run(train_step, args=(data,))
        return keras_compat.reduce_per_replica(outputs, model.distribute_strategy,
                                               reduction="auto")

    if not model.run_eagerly:
        one_step_on_data = tf.function(one_step_on_data, reduce_retracing=True,
                                       jit_compile=model.jit_compile)
    one_step = keras_compat.autoconvert_optionals(model, one_step_on_data)

    @tf.autograph.experimental.do_not_convert
    def multi_step_on_iterator(iterator, steps):
        # The loop's outputs start empty; as in Keras' own loop, their spec
        # is that of the step's outputs, known once the body is traced.
        empty = tf.experimental.Optional.empty(None)

        def more(done, outputs, inputs):
            return tf.logical_and(done < steps, inputs.has_value())

        def step(done, outputs, inputs):
            outputs = tf.experimental.Optional.from_value(one_step(inputs.get_value()))
            empty._element_spec = outputs.element_spec
            # Read no batch beyond the call's last.
            inputs = tf.cond(done + 1 < steps, iterator.get_next_as_optional,
                             lambda: inputs)
            return done + 1, outputs, inputs

        _, outputs, _ = tf.while_loop(
            more, step, (tf.constant(0), empty, iterator.get_next_as_optional()))
        outputs._element_spec = empty.element_spec
        return outputs

    if not model.run_eagerly:
        multi_step_on_iterator = tf.function(multi_step_on_iterator,
                                             reduce_retracing=True)

    def function(iterator):
        steps = position.steps or model.steps_per_execution
        if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
            outputs = multi_step_on_iterator(iterator, tf.constant(steps, "int32"))
            if not outputs.has_value():
                raise StopIteration
            return outputs.get_value()
        outputs = None  # A Python iterator of batches (`train_on_batch`).
        for _, data in zip(range(steps), iterator):
            outputs = one_step(data)
        return outputs

    function.multi_step = multi_step_on_iterator
    function.one_step = one_step_on_data
    return function
