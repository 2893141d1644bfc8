"""`ALModel`: a Keras model trained by Associated Learning."""

import contextlib

import keras
import tensorflow as tf

from al_keras import distribute as distribute_lib
from al_keras import export as export_lib
from al_keras import input_checks
from al_keras import labels as labels_lib
from al_keras import nonfinite
from al_keras import optimizers as optimizers_lib
from al_keras import pipeline as pipeline_lib
from al_keras.layers import AssociatedBlock

OUTPUT_LOSSES = ("mse", "categorical_crossentropy")


@keras.saving.register_keras_serializable(package="al_keras")
class ALModel(input_checks.CheckedDataMixin, keras.Model):
    """A classifier made of `AssociatedBlock`s, trained by Associated Learning.

    Training (`fit`) never back-propagates across a block boundary.  For each
    block i, with `s_0 = x` and `t_0 = one_hot(y)`:

    * the **auto-encoder loss** `ae_loss_i = MSE(h_i(t_i), t_{i-1})` with
      `t_i = g_i(stop_gradient(t_{i-1}))` trains only `g_i` and `h_i`
      (for `h_1` the loss is `output_loss`);
    * the **associated loss** `assoc_loss_i = MSE(b_i(s_i), stop_gradient(t_i))`
      with `s_i = f_i(stop_gradient(s_{i-1}))` trains only `f_i` and `b_i`.

    Each loss has its own `tf.GradientTape` and its own optimizer, cloned from
    the optimizer given to `compile()`; auto-encoder optimizers run at
    `ae_lr_multiplier` times its learning rate (2, as in the original code).
    `model.optimizer` stays the one you passed: its learning rate (a float
    that callbacks such as `ReduceLROnPlateau` may change, or a schedule) is
    followed by every block optimizer, and its `iterations` counts steps.
    The block optimizers are `model.assoc_optimizers` and
    `model.ae_optimizers`; they are saved with the model.

    Inference (`call`, `predict`, `evaluate`) follows
    `x -> f_1 ... f_L -> b_L -> h_L ... h_1` and returns class probabilities.
    With `output_loss="mse"` (the original) `h_1` is a sigmoid layer whose
    scores are clipped at 0 and normalised to sum to 1 (argmax unchanged);
    with `"categorical_crossentropy"` `h_1` is a softmax.  The shortcut
    *exit* at block i (`x -> f_1 ... f_i -> b_i -> h_i ... h_1`) is
    `model(x, exit=i)`, `model.predict(x, exit=i)` or
    `model.evaluate(x, y, exit=i)`; `model.call_exits(x)` and
    `model.evaluate_exits(dataset)` give every exit from one pass of the
    encoders; the SavedModel from `model.export()` has one signature per
    exit.

    Several devices: a model created under
    `al_keras.distribute.BlockParallel(...).scope()` has each block on its
    own device and, by default, trains the blocks at the same time in a
    pipelined step; under a `tf.distribute` strategy (`MirroredStrategy`,
    `MultiWorkerMirroredStrategy`) each block's gradients are all-reduced
    over the replicas.  See `al_keras.distribute`.

    Logs: `loss` (sum of the weighted local losses), `assoc_loss_<i>` and
    `ae_loss_<i>` per block (1-based, weighted, regularization included), and
    the compiled metrics on the inference path.  Labels may be class ids
    `(batch,)` / `(batch, 1)` or one-hot rows `(batch, num_classes)`.

    Args:
        blocks: list of `AssociatedBlock`, input side first.  Block 1's
            `target_units` must be `num_classes`, block i's the
            `label_units` of block i-1.
        num_classes: int >= 2.
        output_loss: loss of `h_1`: `"mse"` (default) or
            `"categorical_crossentropy"` (then `h_1` must be a softmax, as
            `al_keras.associate` builds it).
        loss_weights: optional list of one float >= 0 per block, multiplying
            both local losses of that block.
        ae_lr_multiplier: float > 0, learning rate of the auto-encoder
            optimizers relative to `model.optimizer`'s.
        **kwargs: `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: input batch.
        training: bool.
        exit: optional int in `[1, num_blocks]`: the block whose shortcut
            path is used; default: the full path (`num_blocks`).

    Example:

    >>> model = al_keras.associate(
    ...     [keras.layers.Dense(64, "elu"), keras.layers.Dense(64, "elu")],
    ...     num_classes=10, label_units=32, input_shape=(64,))
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3),
    ...               metrics=["accuracy"])
    >>> model.fit(x, y, epochs=5)                      # doctest: +SKIP
    >>> model.predict(x, exit=1)                       # doctest: +SKIP

    Reference:
        Kao & Chen, Associated Learning: Decomposing End-to-end
        Backpropagation based on Auto-encoders and Target Propagation,
        Neural Computation 33(1), 2021 (arXiv:1906.05560).
    """

    def __init__(
        self,
        blocks,
        num_classes,
        output_loss="mse",
        loss_weights=None,
        ae_lr_multiplier=2.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        blocks = [
            keras.saving.deserialize_keras_object(b) if isinstance(b, dict) else b
            for b in blocks
        ]
        _check_blocks(blocks, num_classes)
        if output_loss not in OUTPUT_LOSSES:
            raise ValueError(
                f"Unknown output_loss {output_loss!r}; expected one of "
                f"{OUTPUT_LOSSES}."
            )
        decoder_activation = blocks[0].label_decoder.activation
        if (output_loss == "categorical_crossentropy") != (
            decoder_activation == "softmax"
        ):
            raise ValueError(
                f"output_loss={output_loss!r} needs h_1 "
                f"{'with' if output_loss != 'mse' else 'without'} a softmax, "
                f"but block 1's label decoder uses {decoder_activation!r}. "
                "Build the blocks with al_keras.associate(..., "
                f"output_loss={output_loss!r})."
            )
        if loss_weights is None:
            loss_weights = [1.0] * len(blocks)
        loss_weights = [float(w) for w in loss_weights]
        if len(loss_weights) != len(blocks) or any(w < 0 for w in loss_weights):
            raise ValueError(
                f"loss_weights must be {len(blocks)} numbers >= 0 (one per "
                f"block), got {loss_weights}."
            )
        if not float(ae_lr_multiplier) > 0:
            raise ValueError(
                f"ae_lr_multiplier must be > 0, got {ae_lr_multiplier!r}."
            )
        self.blocks = blocks
        self.num_classes = num_classes
        self.output_loss = output_loss
        self.loss_weights = loss_weights
        self.ae_lr_multiplier = float(ae_lr_multiplier)

        self.assoc_loss_trackers = [
            keras.metrics.Mean(name=f"assoc_loss_{i}")
            for i in range(1, len(blocks) + 1)
        ]
        self.ae_loss_trackers = [
            keras.metrics.Mean(name=f"ae_loss_{i}")
            for i in range(1, len(blocks) + 1)
        ]
        self.total_loss_tracker = _SumOfResults(
            self.assoc_loss_trackers + self.ae_loss_trackers, name="loss")
        self.skipped_updates_tracker = keras.metrics.Sum(name="skipped_updates")
        self.on_nonfinite_loss = "stop"
        self.assoc_optimizers = []
        self.ae_optimizers = []
        self._active_exit = None
        # Compiled functions per exit: predict/test, and evaluate_exits'.
        self._exit_functions = _Untracked({})
        # The BlockParallel strategy whose scope the model is created in.
        self._placement = pipeline_lib.PlacementState(
            distribute_lib.current_block_parallel())

    # ------------------------------------------------------------------ build
    @property
    def num_blocks(self):
        return len(self.blocks)

    def build(self, input_shape):
        shape = tuple(input_shape)
        strategy = self._placement.strategy
        if strategy is not None:
            self._placement.devices = strategy.place(self, shape)
        for index, block in enumerate(self.blocks):
            if not block.built:
                with self._placement.device(index):
                    block.build(shape)
            shape = tuple(block.compute_output_shape(shape))
        if getattr(self, "compiled", False):
            self._build_optimizers()

    def compile(self, optimizer="adam", loss=None, metrics=None,
                on_nonfinite_loss="stop", **kwargs):
        """Configures training; see `keras.Model.compile`.

        `loss` must stay unset: AL trains with its own local losses.  The
        optimizer (string or instance) is cloned into one optimizer per block
        and per loss family.

        `on_nonfinite_loss`: `"stop"` (default) makes `fit` raise
        `al_keras.NonFiniteLossError` naming the block, the loss and the
        step as soon as a local loss is NaN or Inf; `"skip"` makes each
        block skip the update of a batch whose loss or gradients are not
        finite, and go on (logged as `skipped_updates`: the local updates,
        two per block and batch, skipped in the epoch; not under a data-parallel
        strategy, whose all-reduced updates cannot be skipped by one replica).
        """
        nonfinite.check_mode(on_nonfinite_loss, self.distribute_strategy)
        if loss is not None:
            raise ValueError(
                "ALModel trains with its own local losses; leave `loss` unset "
                f"in compile() (got loss={loss!r}). Choose the loss of h_1 with "
                "ALModel(output_loss=...)."
            )
        if kwargs.get("loss_weights") is not None:
            raise ValueError(
                "compile(loss_weights=...) is not used by ALModel; give "
                "per-block weights as ALModel(loss_weights=[...])."
            )
        if self._placement.strategy is not None:
            if kwargs.get("jit_compile") is True:
                raise ValueError(
                    "jit_compile=True cannot be used with BlockParallel: XLA "
                    "compiles a step for one device. Leave it unset."
                )
            kwargs["jit_compile"] = False
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.on_nonfinite_loss = on_nonfinite_loss
        self._compile_config.config["on_nonfinite_loss"] = on_nonfinite_loss
        self._placement.drain_function = None
        self.assoc_optimizers = []
        self.ae_optimizers = []
        self._exit_functions = _Untracked({})
        if self.built:
            self._build_optimizers()

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        if self._placement.strategy is not None:
            config.pop("jit_compile", None)  # Loaded onto placed blocks.
        self.compile(**config)

    def _build_optimizers(self):
        """Clones `self.optimizer` per block and loss family, and builds them.

        Built eagerly (not lazily in the first step) so that `.keras` reloads
        restore their state and distribution strategies see their variables.
        """
        with tf.init_scope():  # Eagerly, also when built in a traced step.
            self._build_optimizers_now()

    def _build_optimizers_now(self):
        template = self.optimizer
        if not template.built:
            template.build([])  # It only carries the learning rate and step.
        assoc_optimizers, ae_optimizers = [], []
        for index, block in enumerate(self.blocks):
            with self._placement.device(index):
                assoc_opt = optimizers_lib.clone_optimizer(
                    template, 1.0, f"assoc_optimizer_{index + 1}")
                ae_opt = optimizers_lib.clone_optimizer(
                    template, self.ae_lr_multiplier, f"ae_optimizer_{index + 1}")
                assoc_opt.build(block.input_side_variables)
                ae_opt.build(block.label_side_variables)
            assoc_optimizers.append(assoc_opt)
            ae_optimizers.append(ae_opt)
        self.assoc_optimizers = assoc_optimizers
        self.ae_optimizers = ae_optimizers

    # --------------------------------------------------------------- metrics
    @property
    def metrics(self):
        own = [
            self.total_loss_tracker,
            *self.assoc_loss_trackers,
            *self.ae_loss_trackers,
        ]
        keras_loss = getattr(self, "_loss_tracker", None)
        rest = [
            m
            for m in super().metrics
            if m is not keras_loss and m is not self.skipped_updates_tracker
            and not any(m is o for o in own)
        ]
        if self.on_nonfinite_loss == "skip":
            own.append(self.skipped_updates_tracker)
        return own + rest

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

    # ----------------------------------------------------------- local parts
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

    def _decode(self, prediction, exit):
        """h_exit ... h_1 applied to a bridge output; returns probabilities."""
        t = prediction
        for index in reversed(range(exit)):
            with self._placement.device(index):
                t = self.blocks[index].label_decoder(t, training=False)
        return self._scores(t)

    def _scores(self, decoded):
        """Class probabilities from the output of h_1."""
        scores = tf.cast(decoded, "float32")
        if self.output_loss == "categorical_crossentropy":
            return scores
        scores = tf.nn.relu(scores) + 1e-7
        return scores / tf.reduce_sum(scores, axis=-1, keepdims=True)

    def _check_exit(self, exit):
        if exit is None:
            return self.num_blocks
        if isinstance(exit, bool) or not isinstance(exit, int):
            raise TypeError(f"`exit` must be an int, got {exit!r}.")
        if not 1 <= exit <= self.num_blocks:
            raise ValueError(
                f"`exit` must be in [1, {self.num_blocks}] (this model has "
                f"{self.num_blocks} blocks), got {exit}."
            )
        return exit

    # ------------------------------------------------------------- inference
    def call(self, inputs, training=None, exit=None):
        exit = self._check_exit(exit)
        s = inputs
        for index, block in enumerate(self.blocks[:exit]):
            with self._placement.device(index):
                s = block(s, training=training)
        with self._placement.device(exit - 1):
            prediction = self.blocks[exit - 1].bridge(s, training=training)
        return self._decode(prediction, exit)

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
            with self._placement.device(index):
                s = block(s, training=training)
                if index + 1 in exits:
                    prediction = block.bridge(s, training=training)
            if index + 1 in exits:
                outputs[index + 1] = self._decode(prediction, index + 1)
        return outputs

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
            @tf.function
            def count(x, y):
                ids = tf.argmax(labels_lib.to_one_hot(y, self.num_classes), -1)
                return tf.stack([
                    tf.reduce_sum(tf.cast(tf.argmax(p, -1) == ids, tf.int64))
                    for p in self.call_exits(x, exits).values()])
            self._exit_functions.value[key] = count
        correct, total = 0, 0
        for x, y in data:
            correct += count(x, y).numpy()
            total += int(tf.shape(x)[0])
        return {exit: float(c) / max(total, 1) for exit, c in zip(exits, correct)}

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    # -------------------------------------------------------------- training
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

    def _step_logs(self, logs):
        """The step's logs, as Keras can reduce them over the replicas.

        Keras 3.15 averages a step's logs over the workers of a
        `MultiWorkerMirroredStrategy` with `reduce("MEAN", axis=0)`, which
        fails on scalars (keras-team/keras#20585); there each log is given
        as a vector of one value.
        """
        if isinstance(self.distribute_strategy,
                      tf.distribute.MultiWorkerMirroredStrategy):
            return {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

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

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' symbolic build, from one replica's batch.

        Keras 3.15 averages a distributed data batch over the replicas
        eagerly before building the compiled metrics symbolically; under
        `MultiWorkerMirroredStrategy` that fails ("Attempt to convert a value
        (PerReplica...)").  Only the batch's shapes matter, so one local
        replica's batch is used instead.
        """
        if iterator is not None and isinstance(
                self._distribute_strategy,
                tf.distribute.MultiWorkerMirroredStrategy):
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: self.distribute_strategy
                    .experimental_local_results(v)[0],
                    next(it))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator,
                                             data_batch=data_batch)

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`; a pipelined model drains after each epoch, and
        a non-finite local loss stops it (see `compile`)."""
        callbacks = list(callbacks or [])
        if self._placement.pipelined:
            callbacks.insert(0, pipeline_lib.DrainAtEpochEnd(self))
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

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        exit = self._check_exit(self._active_exit)
        assoc_losses, ae_losses, predictions = self.local_losses(
            x, y, sample_weight, training=False
        )
        y_pred = self._decode(predictions[exit - 1], exit)
        self._record_losses(assoc_losses, ae_losses)
        return self._step_logs(self.compute_metrics(x, y, y_pred, sample_weight))

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False, exit=self._active_exit)

    # ------------------------------------------------------------ exits API
    @contextlib.contextmanager
    def _exit_scope(self, exit, function_attr):
        """Runs Keras' predict/evaluate loop with the shortcut path `exit`."""
        exit = self._check_exit(exit)
        if exit == self.num_blocks:
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

    def predict(self, x, *args, exit=None, **kwargs):
        """`keras.Model.predict`; `exit=i` uses block i's shortcut path."""
        with self._exit_scope(exit, "predict_function"):
            return super().predict(x, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, exit=None, **kwargs):
        """`keras.Model.evaluate`; `exit=i` measures block i's shortcut path.

        The local losses are those of the whole model either way.
        """
        with self._exit_scope(exit, "test_function"):
            return super().evaluate(x, y, *args, **kwargs)

    # ---------------------------------------------------------------- export
    def export(self, filepath, format="tf_saved_model", verbose=None,
               input_signature=None, overwrite=False, **kwargs):
        """Writes a SavedModel for serving without al_keras.

        Signatures: `serving_default` (and `serve`), the full-path class
        probabilities; `exit_1` ... `exit_L`, the shortcut paths.  Each takes
        one float tensor `inputs` and returns `{"probabilities": ...}`.  An
        existing `filepath` is replaced only with `overwrite=True`.  Other
        formats are handed to `keras.Model.export`.
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose,
                                  input_signature=input_signature, **kwargs)
        endpoints = {"serve": lambda x: self(x, training=False)}
        for exit in range(1, self.num_blocks + 1):
            endpoints[f"exit_{exit}"] = (
                lambda x, exit=exit: self(x, training=False, exit=exit)
            )
        export_lib.export_saved_model(
            self, filepath, endpoints, input_signature=input_signature,
            overwrite=overwrite, verbose=verbose,
        )

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        config.update(
            blocks=[keras.saving.serialize_keras_object(b) for b in self.blocks],
            num_classes=self.num_classes,
            output_loss=self.output_loss,
            loss_weights=list(self.loss_weights),
            ae_lr_multiplier=self.ae_lr_multiplier,
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["blocks"] = [
            keras.saving.deserialize_keras_object(b, custom_objects=custom_objects)
            for b in config["blocks"]
        ]
        return cls(**config)


class _SumOfResults(keras.metrics.Metric):
    """A metric whose result is the sum of other metrics' results.

    The logged `loss` is the sum of the blocks' mean local losses; in a
    pipelined step the blocks work on different batches, so it is not
    tracked as a mean of per-step sums (which it equals otherwise).
    """

    def __init__(self, metrics, name="loss"):
        super().__init__(name=name)
        self._summed = _Untracked(list(metrics))  # Tracked by the model.

    def update_state(self, *args, **kwargs):
        pass

    def result(self):
        return tf.add_n([m.result() for m in self._summed.value])

    def reset_state(self):
        pass


class _Untracked:
    """Holds `value` out of Keras' attribute tracking."""

    def __init__(self, value):
        self.value = value


def _check_blocks(blocks, num_classes):
    labels_lib.check_num_classes(num_classes)
    if not blocks:
        raise ValueError("An ALModel needs at least one block (num_blocks >= 1).")
    for i, block in enumerate(blocks, start=1):
        if not isinstance(block, AssociatedBlock):
            raise TypeError(
                f"Block {i} is a {type(block).__name__}; ALModel takes "
                "AssociatedBlock layers (use al_keras.associate to wrap plain "
                "Keras layers)."
            )
        expected = num_classes if i == 1 else blocks[i - 2].label_units
        if block.target_units != expected:
            raise ValueError(
                f"Block {i} decodes to {block.target_units} units but must "
                f"decode to {expected} ("
                + ("num_classes" if i == 1 else f"block {i - 1}'s label_units")
                + ")."
            )


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
    losses = [tf.cast(l, "float32") for layer in layers for l in layer.losses]
    return tf.add_n(losses) if losses else 0.0


def _check_gradients(grads, variables, family, index):
    missing = [v.path for g, v in zip(grads, variables) if g is None]
    if missing:
        raise ValueError(
            f"Block {index + 1}'s {family} loss has no gradient for "
            f"{missing}: every trainable variable of the part it trains must "
            "take part in that loss."
        )
