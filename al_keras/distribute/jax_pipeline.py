"""`BlockParallel` on JAX: blocks on devices, pipelined by asynchronous dispatch.

JAX only: `BlockParallel` imports this module on the JAX backend.

Block i's values (its layers' variables and its two optimizers' slots)
live on device `devices[i]`, and its local step is one jitted function
(`ALModel.stateless_train_block`) that runs there; `model.optimizer`'s
values and the metrics live on the first block's device.  Between blocks
only activations move (`s_i`, `t_i`, labels, sample weights:
`jax.device_put`), never gradients.

One tick of the pipeline (`Pipeline.tick`): block 1 takes the new batch,
block k the batch block k-1 finished the tick before.  Every block's step
is dispatched without waiting for any result -- JAX returns at once and
the devices compute at the same time, with no Python thread -- and the
transfers to the next blocks' devices are queued behind them.  Because a
block's step hands on the `s_i`, `t_i` computed before its update, a
pipelined epoch (filled, then drained after its last batch) makes exactly
the updates of the sequential epoch, in another order.  The training
metrics are those of the batch leaving the last block, decoded by
`h_L ... h_1` as they were at the start of the tick (each `h_i` on its
device, one small jitted call each).

Keras' JAX `fit` threads its state tuple (trainable, non-trainable,
optimizer and metric values) through the train function; `Layout` knows
which entries are block i's.  A model built in `fit` (inside Keras'
stateless scope, where no copy of it may be made to measure) is placed at
its first train function: its values are moved to their devices then.
"""

import collections
import contextlib
import time
import weakref

import jax
import keras
import numpy as np

from al_keras.core import executor as executor_lib
from al_keras.distribute import pipeline_simulator
from al_keras.distribute.costs import OverlapProfile


# ----------------------------------------------------------------- devices
def default_devices():
    """Every accelerator JAX sees, or every CPU device when there is none."""
    accelerators = [d for d in jax.devices() if d.platform != "cpu"]
    return accelerators or jax.devices("cpu")


def resolve_devices(devices=None):
    """`jax.Device`s from `devices`: `jax.Device`s or names such as
    `"cpu:1"`, `"gpu:0"`, `"/device:GPU:0"` (default `default_devices()`)."""
    if devices is None:
        return default_devices()
    return [_device(d) for d in devices]


def _device(spec):
    if isinstance(spec, jax.Device):
        return spec
    name = str(spec).lower().replace("/device:", "").strip("/")
    kind, _, index = name.partition(":")
    kind = {"cuda": "gpu"}.get(kind, kind)
    try:
        return jax.devices(kind)[int(index or 0)]
    except (RuntimeError, ValueError, IndexError):
        names = [device_name(d) for d in jax.devices()]
        raise ValueError(
            f"device {spec!r} is not one of JAX's devices {names}; name one "
            "as 'cpu:0' or 'gpu:1', or give a jax.Device.") from None


def device_name(device):
    """`"cpu:0"`, `"gpu:1"`: the name `keras.device` takes."""
    return f"{device.platform}:{device.id}"


class PlacementState:
    """Where one `ALModel`'s blocks live on JAX, kept by its `BlockParallel`.

    Attributes:
        devices: the device name of each block (`"cpu:1"`), once placed.
        input_shape: the shape the model was built for.
        pipeline: its `Pipeline` (jitted steps, batches in flight), made
            with the train function.
        placed: whether Keras' state tuple has its values on their
            devices (inference gathers them on one device; the next train
            call moves them back).
    """

    def __init__(self):
        self.devices = None
        self.input_shape = None
        self.pipeline = None
        self.placed = False

    def device(self, index):
        """`keras.device` of block `index` (a no-op before placement)."""
        if not self.devices:
            return contextlib.nullcontext()
        return keras.device(self.devices[index])


# ------------------------------------------------------------------ layout
class Layout:
    """Where each block's values sit in Keras' JAX state tuple
    `(trainable, non_trainable, optimizer, metrics)`."""

    def __init__(self, model):
        slots = (model.trainable_variables, model.non_trainable_variables,
                 model.state_optimizer_variables())
        where = {}
        for slot, variables in enumerate(slots):
            for position, variable in enumerate(variables):
                where[id(variable)] = (slot, position)
        self.blocks = [[where[id(v)] for v in model.block_variables(index)]
                       for index in range(model.num_blocks)]
        positions = {id(v): p for p, v in enumerate(model.optimizer.variables)}
        self.num_model_optimizer = len(positions)
        # Among model.optimizer's values: its step count, and its float
        # learning rate, which the block optimizers follow (None: a schedule).
        self.iterations = positions[id(model.optimizer.iterations)]
        rate = model.learning_rate_variable()
        self.learning_rate = None if rate is None else positions[id(rate)]

    def split(self, state):
        """`(per-block values, model.optimizer's values, metric values)`."""
        blocks = [[state[slot][position] for slot, position in entries]
                  for entries in self.blocks]
        return blocks, list(state[2][:self.num_model_optimizer]), list(state[3])

    def join(self, state, blocks, model_optimizer, metrics):
        """`state` with the values `split` gave, updated."""
        slots = [list(state[0]), list(state[1]), list(state[2])]
        for entries, values in zip(self.blocks, blocks):
            for (slot, position), value in zip(entries, values):
                slots[slot][position] = value
        slots[2][:self.num_model_optimizer] = model_optimizer
        return (slots[0], slots[1], slots[2], list(metrics))


def variable_state(model):
    """Keras' state tuple read from `model`'s variables."""
    return ([v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in model.state_optimizer_variables()],
            [v.value for v in model.metrics_variables])


def assign_state(model, state):
    """Writes a state tuple into `model`'s variables."""
    groups = (model.trainable_variables, model.non_trainable_variables,
              model.state_optimizer_variables(), model.metrics_variables)
    for variables, values in zip(groups, state):
        for variable, value in zip(variables, values):
            variable.assign(value)


# --------------------------------------------------------------- functions
def block_function(model, index):
    """Block `index`'s jitted local step `(values, s, t, weight, rate) ->
    (values, (s_i, t_i, b_i(s_i), report))`, `report` the float32 vector
    `[assoc loss, ae loss, assoc applied, ae applied, 1]` (one array to
    hand to the metrics' device); the first block takes the labels `y`
    for `t` and makes `t_0` itself."""
    model_ref = weakref.ref(model)

    def step(values, s, t, weight, rate):
        model = model_ref()
        if index == 0:
            t = model.targets(t)
        values, (s, t, prediction, assoc, ae, applied) = model.stateless_train_block(
            index, values, s, t, weight, rate)
        report = keras.ops.concatenate([
            keras.ops.stack([keras.ops.cast(assoc, "float32"),
                             keras.ops.cast(ae, "float32")]),
            keras.ops.cast(applied, "float32"), keras.ops.ones((1,))])
        return values, (s, t, prediction, report)

    return jax.jit(step)


# An idle block's report: no loss, nothing skipped, weight 0.
_IDLE = np.array([0.0, 0.0, 1.0, 1.0, 0.0], "float32")


def forward_function(model, index):
    """Block `index`'s input-side forward `(values, s) -> b_i(f_i(s))`,
    jitted (the `forward` of its `BlockCost`)."""
    model_ref = weakref.ref(model)

    def forward(values, s):
        model = model_ref()
        block = model.blocks[index]
        with keras.StatelessScope(state_mapping=list(
                zip(model.block_variables(index), values))):
            return block.bridge(block.encoder(s, training=True), training=True)

    return jax.jit(forward)


class Pipeline:
    """One model's blocks on their devices: the jitted functions, and the
    batches in flight between the blocks (`buffers[k]`: block k's next
    input, on its device)."""

    def __init__(self, model, devices):
        self.model_ref = weakref.ref(model)
        self.devices = list(devices)
        self.layout = Layout(model)
        self.steps = [block_function(model, i) for i in range(model.num_blocks)]
        decoder_ids = []
        for index, block in enumerate(model.blocks):
            ids = {id(v): p for p, v in enumerate(model.block_variables(index))}
            decoder = block.label_decoder
            decoder_ids.append(
                ([ids[id(v)] for v in decoder.trainable_variables],
                 [ids[id(v)] for v in decoder.non_trainable_variables]))
        self.decoder_positions = decoder_ids
        self.decoders = [self._decoder(i) for i in range(model.num_blocks)]
        self.metrics_update = jax.jit(self._metrics_update)
        self.metrics_result = jax.jit(self._metrics_result)
        self.buffers = [None] * model.num_blocks
        self.labels = collections.deque()  # (y, weight) of the batches in flight.
        self.examples = [0] * model.num_blocks
        self._rates = None

    @property
    def home(self):
        """The first block's device: `model.optimizer`'s and the metrics'."""
        return self.devices[0]

    @property
    def in_flight(self):
        return any(b is not None for b in self.buffers[1:])

    # ------------------------------------------------------------ pieces
    def _decoder(self, index):
        model_ref = self.model_ref

        def decode(trainable, non_trainable, t):
            t, _ = model_ref().blocks[index].label_decoder.stateless_call(
                trainable, non_trainable, t)
            return t

        return jax.jit(decode)

    def _metrics_update(self, metrics, decoded, y, weight, reports):
        model = self.model_ref()
        assoc, ae, active = [r[0] for r in reports], [r[1] for r in reports], [
            r[4] for r in reports]
        applied = None
        if model.on_nonfinite_loss == "skip":
            applied = [r[2:4] > 0.5 for r in reports]
        with keras.StatelessScope(state_mapping=list(
                zip(model.metrics_variables, metrics))) as scope:
            model.record_losses(assoc, ae, weights=active, applied=applied)
            logs = {}
            if decoded is not None:
                logs = model.compute_metrics(None, y, model.scores(decoded), weight)
        return logs, [scope.get_current_value(v) for v in model.metrics_variables]

    def _metrics_result(self, metrics):
        model = self.model_ref()
        with keras.StatelessScope(state_mapping=list(
                zip(model.metrics_variables, metrics))):
            return model.get_metrics_result()

    def block_rates(self, model_optimizer):
        """`model.optimizer`'s learning rate (in its values
        `model_optimizer`) on every block's device, None for a schedule;
        the copies are kept while the rate is the same array."""
        if self.layout.learning_rate is None:
            return None
        rate = model_optimizer[self.layout.learning_rate]
        if self._rates is None or self._rates[0] is not rate:
            self._rates = (rate, [jax.device_put(rate, d) for d in self.devices])
        return self._rates[1]

    def place(self, blocks, model_optimizer, metrics):
        """The values moved to their devices."""
        blocks = [jax.device_put(v, d) for v, d in zip(blocks, self.devices)]
        return (blocks, jax.device_put(model_optimizer, self.home),
                jax.device_put(metrics, self.home))

    # -------------------------------------------------------------- tick
    def tick(self, values, metrics, batch=None, rates=None):
        """One step of every block that has a batch; returns the metrics'
        values and the logs (None when no batch left the last block).

        Args:
            values: per block, its values (replaced by the updated ones).
            metrics: the metric values.
            batch: `(x, y, sample_weight)` entering block 1 (None: drain).
            rates: per block, the learning rate its optimizers follow (on
                its device), or None.
        """
        num_blocks = len(self.steps)
        incoming = list(self.buffers)
        if batch is not None:
            x, y, weight = batch
            if weight is None:
                weight = np.ones((np.shape(x)[0],), "float32")
            x, y, weight = jax.device_put((x, y, weight), self.home)
            incoming[0] = (x, y, weight)  # Block 1 makes t_0 of the labels.
            self.labels.append((y, weight))  # Until the batch leaves.
        if incoming[-1] is not None:  # A batch leaves: h_L ... h_1 before the updates.
            decoders = [([v[p] for p in trainable], [v[p] for p in non_trainable])
                        for v, (trainable, non_trainable)
                        in zip(values, self.decoder_positions)]
        buffers, left, reports, away = [None] * num_blocks, None, [], []
        for index in range(num_blocks):
            if incoming[index] is None:
                reports.append(_IDLE)
                continue
            s, t, weight = incoming[index]
            rate = None if rates is None else rates[index]
            values[index], (s, t, prediction, report) = self.steps[index](
                values[index], s, t, weight, rate)
            self.examples[index] += int(np.shape(s)[0])
            if index + 1 == num_blocks:
                left = prediction
            elif self.devices[index + 1] == self.devices[index]:
                buffers[index + 1] = (s, t, weight)
            else:
                buffers[index + 1] = jax.device_put((s, t, weight), self.devices[index + 1])
            reports.append(report)
            if self.devices[index] != self.home:
                away.append(index)
        self.buffers = buffers
        if away:  # The losses, to the metrics' device in one transfer.
            for index, report in zip(away, jax.device_put([reports[i] for i in away],
                                                          self.home)):
                reports[index] = report
        decoded = y = weight = None
        if left is not None:
            decoded = left
            y, weight = self.labels.popleft()
            for index in reversed(range(num_blocks)):
                if index + 1 < num_blocks and self.devices[index + 1] != self.devices[index]:
                    decoded = jax.device_put(decoded, self.devices[index])
                decoded = self.decoders[index](*decoders[index], decoded)
        logs, metrics = self.metrics_update(metrics, decoded, y, weight, reports)
        return metrics, (logs if left is not None else None)

    def drain(self, values, metrics, rates=None):
        """Ticks until no batch is in flight; returns the metric values and
        the last logs (None when no batch left the last block)."""
        logs = None
        while self.in_flight:
            metrics, logs = self.tick(values, metrics, None, rates)
        return metrics, logs


# --------------------------------------------------------- train function
def train_function(model, pipeline, pipelined, state):
    """Keras' JAX train function of `model` on its blocks' devices: one
    pipeline tick per batch (`pipelined`), or each batch through every
    block before the next (ticks until drained: the placed, sequential
    step).  `state` is the model's `PlacementState` (`placed` tells whether
    Keras' state tuple has its values on their devices)."""
    from al_keras.core.trainers import jax as trainer

    def step(keras_state, data):
        blocks, model_optimizer, metrics = pipeline.layout.split(keras_state)
        if not state.placed:
            blocks, model_optimizer, metrics = pipeline.place(
                blocks, model_optimizer, metrics)
            state.placed = True
        rates = pipeline.block_rates(model_optimizer)
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        metrics, logs = pipeline.tick(blocks, metrics, (x, y, weight), rates)
        if not pipelined:
            metrics, drained = pipeline.drain(blocks, metrics, rates)
            logs = logs if drained is None else drained
        iterations = pipeline.layout.iterations
        model_optimizer[iterations] = model_optimizer[iterations] + 1
        if logs is None:  # Filling: no batch has left the last block yet.
            logs = pipeline.metrics_result(metrics)
        return logs, pipeline.layout.join(keras_state, blocks, model_optimizer, metrics)

    return trainer.train_function(model, step, jit=False)


def drain(model, pipeline, state):
    """Finishes the batches in flight, on the model's variables (Keras'
    state is written into them first)."""
    if pipeline is None or not pipeline.in_flight:
        return
    model.jax_state_sync()
    keras_state = variable_state(model)
    blocks, model_optimizer, metrics = pipeline.layout.split(keras_state)
    blocks, model_optimizer, metrics = pipeline.place(blocks, model_optimizer, metrics)
    rates = pipeline.block_rates(model_optimizer)
    metrics, _ = pipeline.drain(blocks, metrics, rates)
    assign_state(model, pipeline.layout.join(keras_state, blocks, model_optimizer,
                                             metrics))


# ----------------------------------------------------------- measurement
class _OnDevices(executor_lib.Executor):
    """Block i on `devices[i]`, nothing else: a measured copy's executor."""

    def __init__(self, devices):
        self.devices = list(devices)

    def device(self, model, index):
        return keras.device(device_name(self.devices[index]))


def _copy(model, input_shape, devices):
    """A compiled, built copy of `model`, block i on `devices[i]`."""
    with executor_lib.scope(_OnDevices(devices)):
        copy = type(model).from_config(model.get_config())
        copy.compile(optimizer="adam")
        copy.build((None,) + tuple(input_shape)[1:])
    return copy


def _inputs(model, input_shape, batch_size, seed=0):
    """Per block, a random batch of its inputs (`s`, and `y` or `t`)."""
    rng = np.random.default_rng(seed)
    spec = keras.KerasTensor((batch_size,) + tuple(input_shape)[1:])
    t = rng.integers(0, model.num_classes, size=(batch_size,)).astype("int32")
    inputs = []
    for block in model.blocks:
        s = rng.uniform(size=spec.shape).astype(spec.dtype)
        inputs.append((s, t, np.ones((batch_size,), "float32")))
        spec = block.compute_output_spec(spec)
        t = rng.uniform(size=(batch_size, block.label_units)).astype("float32")
    return inputs


def _seconds_of(run, calls, at_least=0.05):
    """Seconds per call of `run()` (which returns arrays to wait for)."""
    jax.block_until_ready(run())  # Traced and compiled.
    start, done = time.perf_counter(), 0
    while done < calls or time.perf_counter() - start < at_least:
        result = run()
        done += 1
    jax.block_until_ready(result)
    return (time.perf_counter() - start) / done


def measure_block_costs(model, input_shape, batch_size=32, steps=3, device=None):
    """Each block's jitted local step and input-side forward on a copy of
    `model` on `device` (the model is not touched): one
    `pipeline_simulator.BlockCost` per block, seconds and bytes per batch."""
    device = device or default_devices()[0]
    copy = _copy(model, input_shape, [device] * model.num_blocks)
    costs = []
    for index, (s, t, weight) in enumerate(_inputs(copy, input_shape, batch_size)):
        values = [v.value for v in copy.block_variables(index)]
        step, forward = block_function(copy, index), forward_function(copy, index)
        s, t, weight = jax.device_put((s, t, weight), device)
        total = _seconds_of(lambda: step(values, s, t, weight, None), steps)
        forward_seconds = min(_seconds_of(lambda: forward(values, s), steps), total)
        _, (s_next, t_next, *_) = step(values, s, t, weight, None)
        costs.append(pipeline_simulator.BlockCost(
            forward=forward_seconds, backward=total - forward_seconds,
            activation_bytes=int(s_next.nbytes + t_next.nbytes)))
    return costs


def measure_overlap(model, input_shape, devices, batch_size=32, steps=3, repeats=3):
    """Each device's blocks alone, and every device's at once, on a copy of
    `model` with block i on `devices[i]`: the `OverlapProfile` of this
    placement (each block on a random batch of its own inputs, as in a
    pipeline tick)."""
    copy = _copy(model, input_shape, devices)
    work = {}
    for index, inputs in enumerate(_inputs(copy, input_shape, batch_size)):
        values = [v.value for v in copy.block_variables(index)]
        arguments = jax.device_put((values,) + inputs, devices[index])
        work.setdefault(devices[index], []).append(
            (block_function(copy, index), arguments))

    def run(entries):
        return [step(values, s, t, weight, None)
                for step, (values, s, t, weight) in entries]

    order = list(work)
    everything = [entry for device in order for entry in work[device]]
    alone, together = [[] for _ in order], []
    for _ in range(max(1, repeats)):
        for position, device in enumerate(order):
            alone[position].append(_seconds_of(lambda d=device: run(work[d]), steps))
        together.append(_seconds_of(lambda: run(everything), steps))
    return OverlapProfile(device_seconds=tuple(min(a) for a in alone),
                          concurrent_seconds=min(together))
