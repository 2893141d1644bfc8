"""What `BlockParallel`'s `placement="auto"` measures on TensorFlow devices.

`measure_block_costs`: each block's compiled training step and input-side
forward, on a copy of the model; `measure_overlap`: each device's blocks
alone against every device's blocks at once, the `OverlapProfile` behind
`BlockParallel.predicted_speedup` (which the JAX measurement,
`jax_pipeline.measure_overlap`, returns too).  TensorFlow is imported where
it is used.
"""

import dataclasses
import time

import keras

from al_keras.core import executor as executor_lib
from al_keras.distribute import pipeline_simulator


def measure_block_costs(model, input_shape, batch_size=32, steps=3,
                        device=None, jit_compile=False):
    """Measures each block's training-step cost on a copy of `model`.

    Times each block's local step (both tapes, both Adam updates) and its
    input-side forward alone (f_i, b_i), compiled with XLA if
    `jit_compile`, on random data, on a copy of
    `model` built on `device` (the model itself is not built nor touched;
    the copy, which needs the model's memory once more on that device, is
    dropped afterwards).

    Returns:
        A list with one `pipeline_simulator.BlockCost` per block, in
        seconds and bytes per batch of `batch_size`: `forward` (f_i, b_i),
        `backward` (the rest of the step: backward passes, updates and the
        label side), `activation_bytes` (`s_i` and `t_i`, handed on).
    """
    import tensorflow as tf

    with executor_lib.scope(None), tf.device(device):
        copy = type(model).from_config(model.get_config())
        copy.build((None,) + tuple(input_shape)[1:])
        s = tf.random.uniform((batch_size,) + tuple(input_shape)[1:])
        t = tf.one_hot(tf.zeros([batch_size], "int32"), model.num_classes)
        costs = []
        for index, block in enumerate(copy.blocks):
            optimizers = (keras.optimizers.Adam(), keras.optimizers.Adam())
            optimizers[0].build(block.label_side_variables)
            optimizers[1].build(block.input_side_variables)
            step = tf.function(
                lambda s, t, i=index, o=optimizers: copy.train_block(
                    i, s, t, None, o), jit_compile=jit_compile)
            forward = tf.function(
                lambda s, b=block: b.bridge(b.encoder(s, training=True),
                                            training=True),
                jit_compile=jit_compile)
            total = _seconds_per_call(step, (s, t), steps)
            forward_seconds = min(_seconds_per_call(forward, (s,), steps), total)
            s_next, t_next, *_ = step(s, t)
            costs.append(pipeline_simulator.BlockCost(
                forward=forward_seconds, backward=total - forward_seconds,
                activation_bytes=_num_bytes(s_next) + _num_bytes(t_next)))
            s = tf.cast(s_next, "float32")
            t = tf.cast(t_next, "float32")
    return costs


@dataclasses.dataclass(frozen=True)
class OverlapProfile:
    """How much the devices of a placement overlap, as `measure_overlap` timed it.

    Attributes:
        device_seconds: per device (in the order of first use), seconds of
            one pass of its blocks' steps run alone.
        concurrent_seconds: seconds of one pass of every device's blocks at
            once (one compiled function, as the pipelined step).
    """

    device_seconds: tuple
    concurrent_seconds: float

    @property
    def serial_seconds(self):
        """One pass of every device's blocks, one device after the other."""
        return sum(self.device_seconds)

    @property
    def speedup(self):
        """serial_seconds / concurrent_seconds: the pipelined step's
        predicted speedup over running the blocks one after the other."""
        return self.serial_seconds / self.concurrent_seconds

    @property
    def overlap(self):
        """The slowest device alone / all devices at once: 1.0 when the
        devices do not slow each other, 1 / num_devices when they take
        turns; speedup = (serial / slowest) * overlap."""
        return max(self.device_seconds) / self.concurrent_seconds


def measure_overlap(model, input_shape, devices, batch_size=32, steps=3, repeats=3,
                    jit_compile=False):
    """Times each device's blocks alone and every device's blocks at once.

    Builds a copy of `model` with block i on `devices[i]` (the model itself
    is not touched), gives every block a random batch of its own input (of
    the shapes of `x` and of the previous block's `s` and `t`), traces one
    function per device that runs its blocks' local steps (both tapes, both
    Adam updates), each block on its own batch, as in the pipelined step,
    and one function that runs every device's blocks: the pipelined step's
    structure, whose independent parts TensorFlow's executor runs at the
    same time.  Then,
    `repeats` times, it times each device's function alone and the function
    of all devices (`steps` passes each, more until 50 ms have passed); the
    fastest of the repeats count.

    Args:
        model: the `ALModel` (built or not).
        input_shape: its input shape, batch dimension first.
        devices: the device name of each block (a placement).
        batch_size: examples per batch.
        steps: passes per timing.
        repeats: timings of each kind.
        jit_compile: compile each block's local step with XLA for its
            device, as `BlockParallel(jit_compile=True)` trains.

    Returns:
        An `OverlapProfile` (seconds per pass).
    """
    import tensorflow as tf

    order = list(dict.fromkeys(devices))
    with executor_lib.scope(_OnDevices(devices)):
        copy = type(model).from_config(model.get_config())
        copy.build((None,) + tuple(input_shape)[1:])
        spec = keras.KerasTensor((batch_size,) + tuple(input_shape)[1:])
        t_shape, t_dtype = (batch_size, model.num_classes), "float32"
        work = {device: [] for device in order}  # device -> [(index, s, t, optimizers)]
        for index, block in enumerate(copy.blocks):
            with tf.device(devices[index]):
                optimizers = (keras.optimizers.Adam(), keras.optimizers.Adam())
                optimizers[0].build(block.label_side_variables)
                optimizers[1].build(block.input_side_variables)
                s = tf.cast(tf.random.uniform(spec.shape), spec.dtype)
                t = tf.cast(tf.random.uniform(t_shape), t_dtype)
            work[devices[index]].append((index, s, t, optimizers))
            spec = block.compute_output_spec(spec)
            t_shape, t_dtype = (batch_size, block.label_units), block.label_encoder.compute_dtype

        def local_step(index, optimizers):
            def step(s, t):
                return copy.train_block(index, s, t, None, optimizers)
            return tf.function(step, jit_compile=True, autograph=False) if jit_compile else step

        def device_pass(entries):
            block_steps = [local_step(index, optimizers)
                     for index, _, _, optimizers in entries]

            def run():
                losses = []
                for (index, s, t, _), step in zip(entries, block_steps):
                    with tf.device(devices[index]):
                        _, _, _, assoc, ae, _ = step(s, t)
                    losses.append(assoc + ae)
                return losses
            return run

        runs = [device_pass(work[device]) for device in order]
        passes = [tf.function(run) for run in runs]
        # One traced graph of every device's blocks, as the pipelined step is.
        at_once = tf.function(lambda: [run() for run in runs])
        alone, together = [[] for _ in passes], []
        for function in passes + [at_once]:  # Traced and warmed up.
            _finish(function())
        for _ in range(max(1, repeats)):
            for position, function in enumerate(passes):
                alone[position].append(_seconds_of(function, steps))
            together.append(_seconds_of(at_once, steps))
    return OverlapProfile(device_seconds=tuple(min(a) for a in alone),
                          concurrent_seconds=min(together))


class _OnDevices(executor_lib.Executor):
    """Block i on `devices[i]`, nothing else: `measure_overlap`'s copy."""

    def __init__(self, devices):
        self.devices = list(devices)

    def device(self, model, index):
        import tensorflow as tf

        return tf.device(self.devices[index])


def _finish(result):
    import tensorflow as tf

    tf.nest.map_structure(lambda r: r.numpy(), result)


def _seconds_of(function, calls, at_least=0.05):
    """Seconds per call of `function()`: `calls` calls, more until `at_least`
    seconds have passed (a pass of a small model takes a millisecond)."""
    start, done = time.perf_counter(), 0
    while done < calls or time.perf_counter() - start < at_least:
        _finish(function())
        done += 1
    return (time.perf_counter() - start) / done


def _seconds_per_call(function, args, calls):
    import tensorflow as tf

    tf.nest.map_structure(lambda r: r.numpy(), function(*args))  # Warm-up.
    start = time.perf_counter()
    for _ in range(calls):
        result = function(*args)
    tf.nest.map_structure(lambda r: r.numpy(), result)
    return (time.perf_counter() - start) / calls


def _num_bytes(tensor):
    import tensorflow as tf

    return int(tf.size(tensor).numpy()) * tensor.dtype.size
