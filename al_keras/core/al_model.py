"""`ALModel`: a Keras model trained by Associated Learning.

The class is put together from its seams: construction, compile, the
block optimizers and the local losses (`step.py`, the paper's math) here;
the training step in the trainer of the Keras backend (`trainers/`:
TensorFlow tapes, JAX `value_and_grad`); inference and exits in `exits.py`;
Keras workarounds in `keras_compat.py`; the data checks of
fit/evaluate/predict in `input_checks.py`; what runs the step (plain, or a
`distribute` executor) through `executor.py`.
"""

import numbers

import keras

from al_keras.core import (
    early_exit,
    epoch_steps,
    input_checks,
    keras_compat,
    nonfinite,
)
from al_keras.core import executor as executor_lib
from al_keras.core import exits as exits_lib
from al_keras.core import labels as labels_lib
from al_keras.core import optimizers as optimizers_lib
from al_keras.core import sequence as sequence_lib
from al_keras.core import step as step_lib
from al_keras.core.block import AssociatedBlock
from al_keras.core.trainers import Trainer

OUTPUT_LOSSES = step_lib.OUTPUT_LOSSES


@keras.saving.register_keras_serializable(package="al_keras")
class ALModel(Trainer, exits_lib.ExitsMixin,
              epoch_steps.ExactEpochStepsMixin, keras_compat.KerasWorkaroundsMixin,
              input_checks.CheckedDataMixin, keras.Model):
    """A classifier made of `AssociatedBlock`s, trained by Associated Learning.

    Training (`fit`) never back-propagates across a block boundary.  For each
    block i, with `s_0 = x` and `t_0 = one_hot(y)`:

    * the **auto-encoder loss** `ae_loss_i = MSE(h_i(t_i), t_{i-1})` with
      `t_i = g_i(stop_gradient(t_{i-1}))` trains only `g_i` and `h_i`
      (for `h_1` the loss is `output_loss`);
    * the **associated loss** `assoc_loss_i = MSE(b_i(s_i), stop_gradient(t_i))`
      with `s_i = f_i(stop_gradient(s_{i-1}))` trains only `f_i` and `b_i`.

    Each loss has its own gradient (a `tf.GradientTape` on TensorFlow, a
    `jax.value_and_grad` on JAX) and its own optimizer, cloned from
    the optimizer given to `compile()`; auto-encoder optimizers run at
    `ae_lr_multiplier` times its learning rate (2, as in the original code).
    `model.optimizer` stays the one you passed: its learning rate (a float
    that callbacks such as `ReduceLROnPlateau` may change, or a schedule) is
    followed by every block optimizer, and its `iterations` counts steps.
    The block optimizers are `model.assoc_optimizers` and
    `model.ae_optimizers`; they are saved with the model.

    Inference (`call`, `predict`, `evaluate`) follows
    `x -> f_1 ... f_L -> b_L -> h_L ... h_1` and returns class probabilities.
    With `output_loss="mse"` (the original) `h_1` has the blocks' bounded
    activation (tanh, or the paper's sigmoid), and its scores are clipped
    at 0 and normalised to sum to 1 (argmax unchanged); with
    `"categorical_crossentropy"` `h_1` is a softmax.  The shortcut
    *exit* at block i (`x -> f_1 ... f_i -> b_i -> h_i ... h_1`) is
    `model(x, exit=i)`, `model.predict(x, exit=i)` or
    `model.evaluate(x, y, exit=i)`; `model.predict(x, exit="adaptive")`
    lets each example leave at its shallowest confident exit (threshold
    from `al_keras.exits.calibrate`); `model.call_exits(x)` and
    `model.evaluate_exits(dataset)` give every exit from one pass of the
    encoders; the SavedModel from `model.export()` has one signature per
    exit.

    Several devices: a model created under
    `al_keras.distribute.BlockParallel(...).scope()` (or `RayPipeline`) is
    trained by that executor, which places each block on its own device
    and, by default, trains the blocks at the same time in a pipelined
    step; under a `tf.distribute` strategy (`MirroredStrategy`,
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
        preprocessor: optional Keras layer from raw inputs to the model's
            inputs, e.g. an adapted `keras.layers.TextVectorization` (strings
            to token ids).  It is not part of `call` (it runs in the input
            pipeline); it is saved with the model, and `export()` serves
            raw inputs through it.
        exit_threshold: optional float >= 0, the confidence at which an
            example leaves early on the adaptive path
            (`predict(x, exit="adaptive")`, the exported `adaptive`
            signature); None: the full path.  Set by
            `al_keras.exits.calibrate`.
        exit_confidence: the adaptive path's confidence, `"max_prob"`
            (default) or `"margin"`.
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
        preprocessor=None,
        exit_threshold=None,
        exit_confidence="max_prob",
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Out of Keras' tracking: a TextVectorization among the model's layers
        # would turn XLA off (Keras' model_supports_jit); its vocabulary is
        # in its config, which get_config carries.
        self._preprocessor = keras_compat.Untracked(
            sequence_lib.check_preprocessor(preprocessor))
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
        if not isinstance(loss_weights, (list, tuple)) or len(loss_weights) != len(
                blocks) or not all(_is_number(w) and 0 <= w < float("inf")
                                   for w in loss_weights):
            raise ValueError(
                f"loss_weights must be {len(blocks)} finite numbers >= 0 (one per "
                f"block), got {loss_weights!r}."
            )
        loss_weights = [float(w) for w in loss_weights]
        if not (_is_number(ae_lr_multiplier) and 0 < ae_lr_multiplier < float("inf")):
            raise ValueError(
                f"ae_lr_multiplier must be a finite number > 0, got {ae_lr_multiplier!r}."
            )
        self.blocks = blocks
        self.num_classes = num_classes
        self.output_loss = output_loss
        self.loss_weights = loss_weights
        self.ae_lr_multiplier = float(ae_lr_multiplier)
        self.exit_threshold = early_exit.check_threshold(exit_threshold)
        self.exit_confidence = early_exit.check_confidence(exit_confidence)

        self.assoc_loss_trackers = [
            keras.metrics.Mean(name=f"assoc_loss_{i}")
            for i in range(1, len(blocks) + 1)
        ]
        self.ae_loss_trackers = [
            keras.metrics.Mean(name=f"ae_loss_{i}")
            for i in range(1, len(blocks) + 1)
        ]
        self.total_loss_tracker = keras_compat.SumOfResults(
            self.assoc_loss_trackers + self.ae_loss_trackers, name="loss")
        self.skipped_updates_tracker = keras.metrics.Sum(name="skipped_updates")
        self.on_nonfinite_loss = "stop"
        self.assoc_optimizers = []
        self.ae_optimizers = []
        self._active_exit = None
        # Compiled functions per exit: predict/test, and evaluate_exits'.
        self._exit_functions = keras_compat.Untracked({})
        # The executor (BlockParallel, RayPipeline) whose scope the model is
        # made in: it runs the training step.
        self._executor = keras_compat.Untracked(executor_lib.current())

    @property
    def num_blocks(self):
        return len(self.blocks)

    @property
    def executor(self):
        """The `al_keras.core.executor.Executor` whose scope the model was
        made in (`BlockParallel`, `RayPipeline`), or None."""
        return self._executor.value

    def hand_to_block(self, index, x):
        """`x` where block `index` can take it (its executor moves an
        eager array between devices where a backend does not; else `x`)."""
        if self.executor is None:
            return x
        return self.executor.hand_to_block(self, index, x)

    def block_device(self, index):
        """The context in which block `index`'s variables and ops live (its
        executor's device for it; a no-op without one)."""
        if self.executor is None:
            return executor_lib.Executor().device(self, index)
        return self.executor.device(self, index)

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.executor is not None:
            self.executor.build(self, shape)
        for index, block in enumerate(self.blocks):
            if not block.built:
                with self.block_device(index):
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
        nonfinite.check_mode(on_nonfinite_loss,
                             getattr(self, "distribute_strategy", None))
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
        requested = dict(kwargs)
        if self.executor is not None:
            kwargs = self.executor.compile(self, dict(kwargs))
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.on_nonfinite_loss = on_nonfinite_loss
        keras_compat.compile_config(self)["on_nonfinite_loss"] = on_nonfinite_loss
        if "jit_compile" in requested:  # As asked, not as the executor runs it.
            keras_compat.compile_config(self)["jit_compile"] = requested["jit_compile"]
        if self.executor is not None:
            self.executor.compiled(self)
        self.assoc_optimizers = []
        self.ae_optimizers = []
        self._exit_functions = keras_compat.Untracked({})
        if self.built:
            self._build_optimizers()

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    def _build_optimizers(self):
        """Clones `self.optimizer` per block and loss family, and builds them.

        Built eagerly (not lazily in the first step) so that `.keras` reloads
        restore their state and distribution strategies see their variables.
        """
        if keras_compat.in_stateless_scope():
            # Keras' JAX fit builds a model symbolically in a stateless
            # scope, where no variable may be made; built right after.
            self._optimizers_pending = True
            return
        with self._eager_scope():  # Eagerly, also when built in a traced step.
            self._build_optimizers_now()

    def _build_optimizers_now(self):
        template = self.optimizer
        if not template.built:
            template.build([])  # It only carries the learning rate and step.
        assoc_optimizers, ae_optimizers = [], []
        for index, block in enumerate(self.blocks):
            with self.block_device(index):
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

    # The local losses, for every trainer and executor (`step.py`).
    def _label_side(self, index, t_prev, sample_weight, training):
        """Block `index`'s label side: `(t_i, weighted auto-encoder loss)`."""
        return step_lib.label_side(
            self.blocks[index], t_prev, sample_weight, training=training,
            first=index == 0, output_loss=self.output_loss,
            weight=self.loss_weights[index])

    def _input_side(self, index, s_prev, t, sample_weight, training):
        """Block `index`'s input side: `(s_i, b_i(s_i), weighted associated loss)`."""
        return step_lib.input_side(self.blocks[index], s_prev, t, sample_weight,
                                   training=training, weight=self.loss_weights[index])

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
        t, s = self.targets(y), x
        assoc_losses, ae_losses, predictions = [], [], []
        for index in range(self.num_blocks):
            t, ae_loss = self._label_side(index, t, sample_weight, training)
            s, prediction, assoc_loss = self._input_side(
                index, s, t, sample_weight, training)
            assoc_losses.append(assoc_loss)
            ae_losses.append(ae_loss)
            predictions.append(prediction)
        return assoc_losses, ae_losses, predictions

    def targets(self, y):
        """One-hot targets `t_0` of labels `y` (class ids or one-hot rows).
        The in-step range check is left out where it cannot run (under XLA,
        on JAX): fit and evaluate check the data before."""
        return labels_lib.to_one_hot(y, self.num_classes,
                                     validate=not self.jit_compile)

    def record_losses(self, assoc_losses, ae_losses, weights=None, applied=None):
        """Updates the per-block loss trackers (`weights`: one per block).

        `applied`: with `on_nonfinite_loss="skip"`, per block whether its
        associated and its auto-encoder update were made (a bool pair); a
        skipped update's loss is left out of its mean and counted in
        `skipped_updates`.
        """
        ops = keras.ops
        weights = weights or [None] * self.num_blocks
        assoc_weights = ae_weights = weights
        if applied is not None:
            assoc_applied = [a[0] for a in applied]
            ae_applied = [a[1] for a in applied]
            assoc_losses, assoc_weights = _kept(assoc_losses, weights, assoc_applied)
            ae_losses, ae_weights = _kept(ae_losses, weights, ae_applied)
            self.skipped_updates_tracker.update_state(ops.sum(
                1.0 - ops.cast(ops.stack(assoc_applied + ae_applied), "float32")))
        for tracker, value, weight in zip(
                self.assoc_loss_trackers, assoc_losses, assoc_weights):
            tracker.update_state(value, sample_weight=weight)
        for tracker, value, weight in zip(
                self.ae_loss_trackers, ae_losses, ae_weights):
            tracker.update_state(value, sample_weight=weight)

    def make_train_function(self, force=False):
        """Keras' train function: the executor's, or the backend's around
        this model's `train_step` (`epoch_steps.exact_train_function`)."""
        if self.train_function is not None and not force:
            return self.train_function
        function = None
        if self.executor is not None:
            function = self.executor.make_train_function(self)
        self.train_function = function or epoch_steps.exact_train_function(
            self, self.train_step)
        return self.train_function

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`; a non-finite local loss stops it (see `compile`),
        and the model's executor adds its own callbacks (a pipeline drains
        after each epoch; a `RayPipeline`'s stage processes train)."""
        callbacks = list(callbacks or [])
        if self.executor is not None:
            callbacks = list(self.executor.fit_callbacks(self)) + callbacks
        if self.on_nonfinite_loss == "stop":
            callbacks.insert(0, nonfinite.StopOnNonFiniteLoss())
        return super().fit(*args, callbacks=callbacks, **kwargs)

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
            exit_threshold=self.exit_threshold,
            exit_confidence=self.exit_confidence,
        )
        if self.preprocessor is not None:
            config["preprocessor"] = keras.saving.serialize_keras_object(
                self.preprocessor)
        return config

    @property
    def preprocessor(self):
        """The layer from raw inputs to the model's inputs, or None."""
        return self._preprocessor.value

    @property
    def vocabulary_size(self):
        """The number of token ids block 1 embeds (None: not a text model)."""
        return sequence_lib.vocabulary_size(self.blocks[0].encoder)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["blocks"] = [
            keras.saving.deserialize_keras_object(b, custom_objects=custom_objects)
            for b in config["blocks"]
        ]
        return cls(**config)


def _kept(losses, weights, applied):
    """Losses and tracker weights leaving out the updates not `applied`."""
    kept = [keras.ops.cast(a, "float32") for a in applied]
    return ([keras.ops.where(a, v, 0.0) for a, v in zip(applied, losses)],
            [k if w is None else w * k for k, w in zip(kept, weights)])


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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
