"""`BlockParallel`: each block of an `ALModel` on its own device.

Model parallelism, AL's own: block i of the model (its variables, optimizer
slots and ops) lives on device `placement[i]`.  No gradient crosses a block
boundary, so with `pipeline=True` the blocks train at the same time inside
one compiled step, each on the micro-batch the block before it finished the
step before (`al_keras.distribute.pipeline`).  `placement="auto"` measures
every block's step (`measure_block_costs`) and balances them
(`pipeline_simulator.balanced_partition`), then times each device's blocks
alone and all devices at once (`measure_overlap`): the predicted speedup of
the pipelined step, which `describe()` states.

On JAX (`al_keras.distribute.jax_pipeline`) the same API puts block i's
values on a JAX device and runs its jitted local step there, the blocks of
a tick dispatched asynchronously so that the devices compute at once.
TensorFlow is imported where it is used (the package imports without it).

Example:

>>> strategy = al_keras.distribute.BlockParallel()   # every GPU, or CPU
>>> with strategy.scope():
...     model = al_keras.models.get("mlp", ...)
...     model.compile(optimizer="adam", metrics=["accuracy"])
>>> model.fit(x, y, epochs=5)                        # doctest: +SKIP
>>> strategy.placement                               # doctest: +SKIP
['/device:GPU:0', '/device:GPU:0', '/device:GPU:1', '/device:GPU:1']
"""

import weakref

import keras

from al_keras.core import executor as executor_lib
from al_keras.core import keras_compat
from al_keras.distribute import pipeline_simulator
from al_keras.distribute.costs import (  # noqa: F401 (the package's API)
    OverlapProfile,
    measure_block_costs,
    measure_overlap,
)

_JAX_HINT = ("on JAX, BlockParallel places and pipelines the blocks on JAX's "
             "devices.")


def check_backend(name, allowed=("tensorflow",)):
    """Raises a one-line ValueError unless Keras runs on one of `allowed`."""
    if keras.backend.backend() not in allowed:
        raise ValueError(
            f"{name} runs on Keras' {' or '.join(allowed)} backend "
            f"(KERAS_BACKEND={allowed[0]}), not {keras.backend.backend()}; " + _JAX_HINT)


def _on_jax():
    return keras.backend.backend() == "jax"


def current_block_parallel():
    """The executor (`BlockParallel`, `RayPipeline`) whose `scope()` is
    active, or None."""
    return executor_lib.current()


def default_devices():
    """Every logical GPU, or every logical CPU device when there is no GPU
    (on JAX: every accelerator, else every CPU device)."""
    if _on_jax():
        from al_keras.distribute import jax_pipeline

        return [jax_pipeline.device_name(d) for d in jax_pipeline.default_devices()]
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU")
    if not devices:
        devices = tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


class BlockParallel(executor_lib.Executor):
    """Places the blocks of an `ALModel` on devices, and pipelines them.

    Used like a `tf.distribute` strategy: models created under
    `strategy.scope()` are placed when they are built.  It is their
    `al_keras.core.executor.Executor`: it places the blocks (`build`,
    `device`), compiles each block's step for its device (`compile`), and
    gives the model its placed or pipelined train function
    (`make_train_function`, around `train_step`) and the drain after each
    epoch (`fit_callbacks`); what it keeps per model is the model's
    `placement_state(model)`.  Block i's variables and optimizer slots are
    created on its device and its training ops run there; on TensorFlow
    inference (`predict`, `evaluate`) follows the blocks across the devices.

    On Keras' JAX backend the same API places block i's values on a JAX
    device and runs its jitted `stateless_train_block` there, every block
    of a step dispatched without waiting, so that the devices compute at
    once (`al_keras.distribute.jax_pipeline`; devices as `jax.Device`s or
    names such as `"gpu:1"`; `jit_compile` must be True or `"auto"`;
    evaluate and predict gather the values on the first block's device).

    With `pipeline=True` one training step runs every block at once: block 1
    on the new batch, block k on the batch block k-1 finished the step
    before (its `s` and `t` activations wait in a buffer on block k's
    device).  Each epoch fills and drains the pipeline: after the epoch's
    last batch, `num_blocks - 1` drain steps let the deeper blocks finish
    it, so that within every epoch every example trains every block exactly
    once, and validation, checkpoints and `on_epoch_end` callbacks see
    fully trained blocks.  Because `ALModel`'s sequential step already feeds
    block k with the `s_{k-1}` computed *before* block k-1's update of that
    step, the pipelined epoch computes what the sequential epoch computes:
    the same updates, in another order (the tests check it to 1e-5).  The
    training metrics (e.g. `accuracy`) are those of the batch leaving the
    last block, decoded with the `h_i` of the start of the step.

    `pipeline=False` runs the same placement one block after the other
    (what TensorFlow's executor overlaps by itself is still overlapped).

    XLA compiles a computation for one device, so with `jit_compile` each
    block's local step (both tapes, both updates) is compiled for its own
    device, and the step around them, which hands the activations from
    device to device, is not: blocks on several GPUs then run compiled and,
    pipelined, at the same time.  The default, `"auto"`, compiles on GPUs
    and not on CPU devices, where compiled steps take turns (XLA's CPU
    runtime shares one thread pool) and the uncompiled blocks overlap and
    train faster (docs/several-devices.md, the throughput table).
    `model.compile(jit_compile=...)` overrides it per model; Keras' default
    `"auto"` takes the strategy's.  `BlockParallel` does not combine with a
    `tf.distribute` strategy.

    Args:
        devices: list of device names (e.g. `["/GPU:0", "/GPU:1"]`); default
            every logical GPU, or every logical CPU device without a GPU
            (split the CPU with `split_cpu` before any TensorFlow op).
        placement: `"auto"` (default): contiguous blocks on each device,
            balanced by each block's measured training-step cost (the
            slowest device is made as fast as possible); or a list with the
            index into `devices` of each block.
        pipeline: bool, pipeline the blocks (default True).
        profile_batch_size: batch size of the cost measurement.
        profile_steps: timed steps per block for the cost measurement.
        predict: pipelined with auto placement on several devices, also
            measure how the devices overlap (`measure_overlap`, on a second
            copy of the model) and predict the pipelined step's speedup
            (default True).
        jit_compile: compile each block's local step with XLA for its
            device: True, False, or `"auto"` (default: True when no device
            is a CPU); the measurements of `"auto"` placement time the
            steps compiled the same way.

    Attributes (set when a model is built in the scope):
        placement: the device name of each block.
        block_costs: measured seconds per training step of each block
            (auto placement only, else None).
        block_profile: the measurement behind them, one
            `pipeline_simulator.BlockCost` per block (forward and the rest
            of the step, bytes handed on per batch of `profile_batch_size`).
        activation_bytes: bytes per example handed from each block to the
            next (`s_i` and `t_i`).
        ideal_speedup: sum of the block costs over the busiest device's
            share of them: what perfect overlap would give (auto only).
        overlap_profile: the `OverlapProfile` measured on the placement
            (pipelined, auto placement on several devices, `predict`; else
            None).
        measured_overlap: its `overlap`: the slowest device's blocks alone
            over all devices' blocks at once (1.0: the devices do not slow
            each other).
        predicted_speedup: its `speedup`: every device's blocks one after
            the other over all at once, the pipelined step's predicted
            speedup over one device.
    """

    # Below this predicted speedup `describe()` says that no gain is predicted.
    NO_GAIN_BELOW = 1.1

    def __init__(self, devices=None, placement="auto", pipeline=True,
                 profile_batch_size=32, profile_steps=3, predict=True,
                 jit_compile="auto"):
        check_backend("BlockParallel", ("tensorflow", "jax"))
        if _on_jax():
            from al_keras.distribute import jax_pipeline

            self.devices = [jax_pipeline.device_name(d)
                            for d in jax_pipeline.resolve_devices(devices or None)]
        else:
            import tensorflow as tf

            self.devices = [tf.DeviceSpec.from_string(d).to_string()
                            for d in (devices or default_devices())]
        if not self.devices:
            raise ValueError("BlockParallel needs at least one device.")
        if placement != "auto":
            placement = [int(i) for i in placement]
            bad = [i for i in placement if not 0 <= i < len(self.devices)]
            if bad:
                raise ValueError(
                    f"placement {placement} names devices {bad}, but there "
                    f"are {len(self.devices)} devices ({self.devices})."
                )
        self.requested_placement = placement
        self.pipeline = bool(pipeline)
        self.profile_batch_size = int(profile_batch_size)
        self.profile_steps = int(profile_steps)
        self.predict = bool(predict)
        if _on_jax():
            jit_compile = _jax_jit(jit_compile)
        elif jit_compile == "auto":
            jit_compile = not any(tf.DeviceSpec.from_string(d).device_type == "CPU"
                                  for d in self.devices)
        if not isinstance(jit_compile, bool):
            raise ValueError(
                f"jit_compile must be True, False or 'auto'; got {jit_compile!r}.")
        self.jit_compile = jit_compile
        self.placement = None
        self.block_profile = None
        self.block_costs = None
        self.activation_bytes = None
        self.ideal_speedup = None
        self.overlap_profile = None
        self._model = None  # The model placed last.
        self._states = weakref.WeakKeyDictionary()  # model -> PlacementState

    def scope(self):
        """Context in which `ALModel`s are created and compiled."""
        if _on_jax():
            return executor_lib.scope(self)
        import tensorflow as tf

        if tf.distribute.has_strategy():
            raise ValueError(
                "BlockParallel cannot be combined with the tf.distribute "
                f"strategy {type(tf.distribute.get_strategy()).__name__}."
            )
        return executor_lib.scope(self)

    def placement_state(self, model):
        """`model`'s `pipeline.PlacementState`: its blocks' devices, its
        pipeline buffers (`holder`), whether its blocks' steps are XLA
        (`jit_blocks`).  Made on first use; kept here, not in the model."""
        state = self._states.get(model)
        if state is None:
            if _on_jax():
                from al_keras.distribute import jax_pipeline as pipeline
            else:
                from al_keras.distribute import pipeline
            state = self._states[model] = pipeline.PlacementState()
        return state

    def examples_trained(self):
        """Per block, how many examples the model placed last has trained
        on (all its pipelined fits); None before its first one."""
        if self._model is None:
            return None
        state = self.placement_state(self._model)
        if _on_jax():
            return state.pipeline and list(state.pipeline.examples)
        if state.holder is None:
            return None
        return [int(c.numpy()) for c in state.holder.examples]

    # ------------------------------------------------------------ executor
    def device(self, model, index):
        """`tf.device` (JAX: `keras.device`) of block `index` (a no-op
        before the model is placed)."""
        return self.placement_state(model).device(index)

    def hand_to_block(self, model, index, x):
        """On JAX, an eager array moved to where block `index`'s values are
        (its device; the first block's after evaluate or predict gathered
        them).  Inside a jitted computation, which runs on one device, `x`
        is left alone."""
        if not _on_jax():
            return x
        import jax

        weights = model.blocks[index].weights
        if not weights or isinstance(x, jax.core.Tracer) or not isinstance(x, jax.Array):
            return x
        return jax.device_put(x, next(iter(weights[0].value.devices())))

    def build(self, model, input_shape):
        """Places `model`'s blocks (`place`) before they are built (on JAX,
        when built in Keras' stateless scope, where no copy may be made to
        measure: at the first train function, moving the values)."""
        state = self.placement_state(model)
        if _on_jax():
            state.input_shape = tuple(input_shape)
            if keras_compat.in_stateless_scope():
                return
        state.devices = self.place(model, input_shape)

    def compile(self, model, kwargs):
        """XLA compiles for one device: each block's local step is compiled
        for its own device (`jit_compile`: compile's, or this strategy's
        for `"auto"`), inside a step that is not."""
        if _on_jax():
            _jax_jit(kwargs.get("jit_compile", "auto"))
            return kwargs
        state = self.placement_state(model)
        requested = kwargs.get("jit_compile", "auto")
        state.jit_requested = "jit_compile" in kwargs
        if requested == "auto":
            requested = self.jit_compile
        elif not isinstance(requested, bool):
            raise ValueError(
                f"jit_compile must be True, False or 'auto'; got {requested!r}.")
        state.jit_blocks = requested
        kwargs["jit_compile"] = False
        return kwargs

    def compiled(self, model):
        """Forgets the traced drain and block steps of an earlier compile;
        a model compiled without `jit_compile` saves the strategy's choice
        (not the `False` of the step around the blocks)."""
        state = self.placement_state(model)
        if _on_jax():
            state.pipeline = None
            return
        state.reset_functions()
        if not state.jit_requested:
            keras_compat.compile_config(model)["jit_compile"] = state.jit_blocks

    def make_train_function(self, model):
        """Keras' train function of `model` around `train_step` (on JAX:
        around a pipeline tick, `jax_pipeline.train_function`)."""
        if _on_jax():
            return self._jax_train_function(model)
        from al_keras.core.trainers import tensorflow as trainer

        return trainer.train_function(model, lambda data: self.train_step(model, data))

    def _jax_train_function(self, model):
        from al_keras.distribute import jax_pipeline

        state = self.placement_state(model)
        if state.devices is None:  # Built in Keras' stateless scope.
            state.devices = self.place(model, state.input_shape)
            state.placed = False
        state.pipeline = jax_pipeline.Pipeline(
            model, jax_pipeline.resolve_devices(state.devices))
        return jax_pipeline.train_function(model, state.pipeline, self.pipeline, state)

    def inference_function(self, model, function):
        """On JAX: `function` (evaluate's or predict's) with the model's
        values gathered on the first block's device (a jitted inference
        step runs on one device); the next train call places them again."""
        if not _on_jax():
            return function
        import jax

        from al_keras.distribute import jax_pipeline

        state = self.placement_state(model)

        def gathered(values, *args):
            device = jax_pipeline.resolve_devices((state.devices or self.devices)[:1])[0]
            state.placed = False
            return function(jax.device_put(values, device), *args)

        return gathered

    def fit_callbacks(self, model):
        """Pipelined: the drain after each epoch's last batch."""
        if _on_jax():
            self.placement_state(model).placed = False
        if not self.pipeline:
            return []
        return [DrainAtEpochEnd(lambda: self.drain(model))]

    def train_step(self, model, data):
        """One training step of `model` on `data`, its blocks on their
        devices: pipelined (`pipeline.pipelined_step`, the metrics of the
        batch leaving the last block) or block after block
        (`pipeline.placed_step`)."""
        from al_keras.distribute import pipeline

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not model.built:
            # Keras (without a distribution strategy) builds a model on its
            # first traced step; the block optimizers are built with it.
            model.build(x.shape)
        model.follow_learning_rate()
        state = self.placement_state(model)
        if self.pipeline:
            pipeline.pipelined_step(model, state, x, y, sample_weight)
            model.count_step(x)
            return model.get_metrics_result()
        return pipeline.placed_step(model, state, x, y, sample_weight)

    def drain(self, model):
        """Finishes the batches still in `model`'s pipeline (`fit` does it
        after each epoch)."""
        state = self.placement_state(model)
        if _on_jax():
            from al_keras.distribute import jax_pipeline

            jax_pipeline.drain(model, state.pipeline, state)
            return
        from al_keras.distribute import pipeline

        pipeline.drain(model, state)

    # ---------------------------------------------------------------- plan
    def place(self, model, input_shape):
        """Chooses the device of each block of `model`; returns the names."""
        num_blocks = model.num_blocks
        if self.requested_placement == "auto":
            if len(self.devices) == 1:
                indices = [0] * num_blocks
            else:
                self.block_profile = self._measure_block_costs(model, input_shape)
                self.block_costs = [c.compute for c in self.block_profile]
                self.activation_bytes = [
                    c.activation_bytes // self.profile_batch_size
                    for c in self.block_profile]
                indices = pipeline_simulator.balanced_partition(
                    self.block_costs, len(self.devices))
                shares = [sum(c for c, i in zip(self.block_costs, indices) if i == d)
                          for d in sorted(set(indices))]
                self.ideal_speedup = sum(shares) / max(max(shares), 1e-12)
                if self.predict and self.pipeline and len(shares) > 1:
                    self.overlap_profile = self._measure_overlap(
                        model, input_shape, [self.devices[i] for i in indices])
        else:
            indices = self.requested_placement
            if len(indices) != num_blocks:
                raise ValueError(
                    f"placement has {len(indices)} entries but the model has "
                    f"{num_blocks} blocks: give one device index per block."
                )
        self.placement = [self.devices[i] for i in indices]
        self._model = model
        return list(self.placement)

    def _measure_block_costs(self, model, input_shape):
        if _on_jax():
            from al_keras.distribute import jax_pipeline

            return jax_pipeline.measure_block_costs(
                model, input_shape, self.profile_batch_size, self.profile_steps,
                device=jax_pipeline.resolve_devices(self.devices[:1])[0])
        return measure_block_costs(
            model, input_shape, self.profile_batch_size, self.profile_steps,
            device=self.devices[0], jit_compile=self.jit_compile)

    def _measure_overlap(self, model, input_shape, devices):
        if _on_jax():
            from al_keras.distribute import jax_pipeline

            return jax_pipeline.measure_overlap(
                model, input_shape, jax_pipeline.resolve_devices(devices),
                self.profile_batch_size, self.profile_steps)
        return measure_overlap(model, input_shape, devices, self.profile_batch_size,
                               self.profile_steps, jit_compile=self.jit_compile)

    # ---------------------------------------------------------- prediction
    @property
    def measured_overlap(self):
        """`overlap_profile.overlap`, or None when not measured."""
        return self.overlap_profile and self.overlap_profile.overlap

    @property
    def predicted_speedup(self):
        """`overlap_profile.speedup`, or None when not measured."""
        return self.overlap_profile and self.overlap_profile.speedup

    @property
    def predicts_gain(self):
        """Whether the predicted speedup reaches `NO_GAIN_BELOW` (None when
        there is no prediction)."""
        speedup = self.predicted_speedup
        return None if speedup is None else speedup >= self.NO_GAIN_BELOW

    def describe(self, instead="RayPipeline (distribute=ray: one process per stage)"):
        """One line: the placement, the block costs and the predicted speedup.

        Args:
            instead: what to use when no gain is predicted, named in the line.

        Returns:
            The line, without a final period, e.g. `"BlockParallel: blocks 1
            on /device:CPU:0; 2 on /device:CPU:1, pipelined, XLA per block; measured seconds
            per block step [0.0021, 0.0019]; predicted speedup 1.02x over one
            device (...); no gain predicted (below 1.1x): use ..."`.
        """
        groups = {}
        for index, device in enumerate(self.placement or []):
            groups.setdefault(device, []).append(str(index + 1))
        where = "; ".join(f"{', '.join(blocks)} on {device}"
                          for device, blocks in groups.items())
        line = (f"BlockParallel: blocks {where}"
                + (", pipelined" if self.pipeline else ", not pipelined")
                + (", jitted per block" if _on_jax() else
                   ", XLA per block" if self.jit_compile else ", no XLA"))
        if self.block_costs:
            line += (f"; measured seconds per block step "
                     f"{[round(c, 4) for c in self.block_costs]}")
        profile = self.overlap_profile
        if profile is None:
            return line
        line += (f"; predicted speedup {profile.speedup:.2f}x over one device (each "
                 f"device's blocks one after the other {1e3 * profile.serial_seconds:.1f}"
                 f" ms, all at once {1e3 * profile.concurrent_seconds:.1f} ms; overlap "
                 f"{profile.overlap:.2f}, ideal from the block costs "
                 f"{self.ideal_speedup:.2f}x)")
        if not self.predicts_gain:
            line += (f"; no gain predicted (below {self.NO_GAIN_BELOW:g}x): use "
                     f"{instead} (docs/several-devices.md)")
        return line


def _jax_jit(jit_compile):
    """On JAX each block's step is jitted for its device: True or "auto"."""
    if jit_compile not in (True, "auto"):
        raise ValueError(
            f"jit_compile={jit_compile!r}: BlockParallel on JAX jits each block's "
            "step for its device (True or 'auto'; False is TensorFlow's option).")
    return True


class DrainAtEpochEnd(keras.callbacks.Callback):
    """Calls `drain()` after each epoch's last batch (and at the end).

    When the epoch's length is unknown (a dataset of unknown cardinality in
    its first epoch) it drains in `on_epoch_end`, i.e. after validation.
    """

    def __init__(self, drain):
        super().__init__()
        self._drain_now = drain
        self._drained = True

    def on_epoch_begin(self, epoch, logs=None):
        self._drained = False

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps")
        if steps and batch + 1 >= steps:
            self._drain()

    def on_epoch_end(self, epoch, logs=None):
        self._drain()

    def on_train_end(self, logs=None):
        self._drain()

    def _drain(self):
        if not self._drained:
            self._drain_now()
            self._drained = True
