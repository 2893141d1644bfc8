"""`BlockParallel`: each block of an `ALModel` on its own device.

Model parallelism, AL's own: block i of the model (its variables, optimizer
slots and ops) lives on device `placement[i]`.  No gradient crosses a block
boundary, so with `pipeline=True` the blocks train at the same time inside
one compiled step, each on the micro-batch the block before it finished the
step before (`al_keras.distribute.pipeline`).  `placement="auto"` measures
every block's step (`measure_block_costs`) and balances them
(`pipeline_simulator.balanced_partition`).

Example:

>>> strategy = al_keras.distribute.BlockParallel()   # every GPU, or CPU
>>> with strategy.scope():
...     model = al_keras.models.get("mlp", ...)
...     model.compile(optimizer="adam", metrics=["accuracy"])
>>> model.fit(x, y, epochs=5)                        # doctest: +SKIP
>>> strategy.placement                               # doctest: +SKIP
['/device:GPU:0', '/device:GPU:0', '/device:GPU:1', '/device:GPU:1']
"""

import contextlib
import threading
import time

import keras
import tensorflow as tf

from al_keras.distribute import pipeline_simulator

_SCOPES = threading.local()


def current_block_parallel():
    """The `BlockParallel` whose `scope()` is active, or None."""
    stack = getattr(_SCOPES, "stack", None)
    return stack[-1] if stack else None


@contextlib.contextmanager
def _scope_of(strategy):
    stack = _SCOPES.__dict__.setdefault("stack", [])
    stack.append(strategy)
    try:
        yield strategy
    finally:
        stack.pop()


def default_devices():
    """Every logical GPU, or every logical CPU device when there is no GPU."""
    devices = tf.config.list_logical_devices("GPU")
    if not devices:
        devices = tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


class BlockParallel:
    """Places the blocks of an `ALModel` on devices, and pipelines them.

    Used like a `tf.distribute` strategy: models created under
    `strategy.scope()` are placed when they are built.  Block i's variables
    and optimizer slots are created on its device and its training ops run
    there; inference (`predict`, `evaluate`) follows the blocks across the
    devices.

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

    XLA compiles a step for one device, so a placed model is compiled with
    `jit_compile=False`.  `BlockParallel` does not combine with a
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

    Attributes (set when a model is built in the scope):
        placement: the device name of each block.
        block_costs: measured seconds per training step of each block
            (auto placement only, else None).
        block_profile: the measurement behind them, one
            `pipeline_simulator.BlockCost` per block (forward and the rest
            of the step, bytes handed on per batch of `profile_batch_size`).
        activation_bytes: bytes per example handed from each block to the
            next (`s_i` and `t_i`).
    """

    def __init__(self, devices=None, placement="auto", pipeline=True,
                 profile_batch_size=32, profile_steps=3):
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
        self.placement = None
        self.block_profile = None
        self.block_costs = None
        self.activation_bytes = None
        self._model = None  # The model placed last.

    def scope(self):
        """Context in which `ALModel`s are created and compiled."""
        if tf.distribute.has_strategy():
            raise ValueError(
                "BlockParallel cannot be combined with the tf.distribute "
                f"strategy {type(tf.distribute.get_strategy()).__name__}."
            )
        return _scope_of(self)

    def examples_trained(self):
        """Per block, how many examples the model placed last has trained
        on (all its pipelined fits); None before its first one."""
        buffers = self._model and self._model._placement.holder
        if buffers is None:
            return None
        return [int(c.numpy()) for c in buffers.examples]

    # ---------------------------------------------------------------- plan
    def place(self, model, input_shape):
        """Chooses the device of each block of `model`; returns the names."""
        num_blocks = model.num_blocks
        if self.requested_placement == "auto":
            if len(self.devices) == 1:
                indices = [0] * num_blocks
            else:
                self.block_profile = measure_block_costs(
                    model, input_shape, self.profile_batch_size,
                    self.profile_steps, device=self.devices[0])
                self.block_costs = [c.compute for c in self.block_profile]
                self.activation_bytes = [
                    c.activation_bytes // self.profile_batch_size
                    for c in self.block_profile]
                indices = pipeline_simulator.balanced_partition(
                    self.block_costs, len(self.devices))
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


def measure_block_costs(model, input_shape, batch_size=32, steps=3,
                        device=None):
    """Measures each block's training-step cost on a copy of `model`.

    Times each block's local step (both tapes, both Adam updates) and its
    input-side forward alone (f_i, b_i) on random data, on a copy of
    `model` built on `device` (the model itself is not built nor touched;
    the copy, which needs the model's memory once more on that device, is
    dropped afterwards).

    Returns:
        A list with one `pipeline_simulator.BlockCost` per block, in
        seconds and bytes per batch of `batch_size`: `forward` (f_i, b_i),
        `backward` (the rest of the step: backward passes, updates and the
        label side), `activation_bytes` (`s_i` and `t_i`, handed on).
    """
    with _scope_of(None), tf.device(device):
        copy = model.__class__.from_config(model.get_config())
        copy.build((None,) + tuple(input_shape)[1:])
        s = tf.random.uniform((batch_size,) + tuple(input_shape)[1:])
        t = tf.one_hot(tf.zeros([batch_size], "int32"), model.num_classes)
        costs = []
        for index, block in enumerate(copy.blocks):
            optimizers = (keras.optimizers.Adam(), keras.optimizers.Adam())
            optimizers[0].build(block.label_side_variables)
            optimizers[1].build(block.input_side_variables)
            step = tf.function(
                lambda s, t, i=index, o=optimizers: copy._train_block(
                    i, s, t, None, o))
            forward = tf.function(
                lambda s, b=block: b.bridge(b.encoder(s, training=True),
                                            training=True))
            total = _seconds_per_call(step, (s, t), steps)
            forward_seconds = min(_seconds_per_call(forward, (s,), steps), total)
            s_next, t_next, *_ = step(s, t)
            costs.append(pipeline_simulator.BlockCost(
                forward=forward_seconds, backward=total - forward_seconds,
                activation_bytes=_num_bytes(s_next) + _num_bytes(t_next)))
            s = tf.cast(s_next, "float32")
            t = tf.cast(t_next, "float32")
    return costs


def _seconds_per_call(function, args, calls):
    tf.nest.map_structure(lambda r: r.numpy(), function(*args))  # Warm-up.
    start = time.perf_counter()
    for _ in range(calls):
        result = function(*args)
    tf.nest.map_structure(lambda r: r.numpy(), result)
    return (time.perf_counter() - start) / calls


def _num_bytes(tensor):
    return int(tf.size(tensor).numpy()) * tensor.dtype.size
