"""The training steps of `BlockParallel`: placed, and pipelined.

TensorFlow only: `BlockParallel` imports this module when it first needs a
step (the package imports without TensorFlow).

* `placed_step` (`pipeline=False`): block by block, each block's whole
  local step (`model.train_block`) on its device, `s_i` and `t_i` handed
  between the devices in between.
* `pipelined_step` (`pipeline=True`).  Step n of a model of L blocks: block
  1 trains on batch n, block k on batch n - k + 1, whose `s_{k-1}`,
  `t_{k-1}`, labels and sample weights block k-1 left in the buffer of
  boundary k-1 (variables on block k's device) in step n - 1.  All buffers
  are read at the start of the step and written at its end, so the L
  blocks' local steps share no variable and TensorFlow's executor runs them
  at the same time.  A block whose buffer is empty (pipeline filling at the
  start of an epoch, draining at its end) skips its update.

`drain(model, state)` runs the L - 1 steps that finish the batches still in
the buffers; `block_parallel.DrainAtEpochEnd` (one of
`BlockParallel.fit_callbacks`) calls it after the last batch of each epoch.

Both steps use only the model's public methods (`train_block`, `targets`,
`record_losses`, `scores`, `count_step`, ...); what they keep between steps
(devices, buffers, traced functions) is the model's `PlacementState`, which
its `BlockParallel` holds.
"""

import contextlib
import weakref

import keras
import tensorflow as tf

# What each boundary's buffer holds, in this order.
_HANDED_ON = ("s", "t", "y", "sample_weight")


class PlacementState:
    """Where one `ALModel`'s blocks live, and its pipeline buffers.

    Kept by the model's `BlockParallel` (`strategy.placement_state(model)`),
    not by the model: Keras neither tracks nor saves it, and the buffers
    hold activations in flight, not model state.

    Attributes:
        devices: the device name of each block, once the model is built.
        holder: the pipeline's buffers (`_Buffers`), once a pipelined step
            is traced.
        drain_function: the traced drain step.
        jit_blocks: whether each block's local step is compiled with XLA
            for its device (set by `compile`).
        block_functions: block index -> its compiled local step.
    """

    def __init__(self):
        self.devices = None
        self.holder = None
        self.drain_function = None
        self.jit_blocks = None
        self.jit_requested = False  # Whether compile was given jit_compile.
        self.block_functions = {}

    def reset_functions(self):
        """Forgets the traced drain and block steps (after a new compile)."""
        self.drain_function = None
        self.block_functions = {}

    def block_step(self, model, index):
        """Block `index`'s local step (`model.train_block`): compiled with
        XLA for the block's device when `jit_blocks`, else the plain call.

        Called under the block's `tf.device`, the compiled function runs
        there as one XLA computation; the activations it takes and returns
        cross devices outside it, in the step around it.
        """
        if not self.jit_blocks:
            return lambda *args: model.train_block(index, *args)
        if index not in self.block_functions:
            model_ref = weakref.ref(model)  # The strategy keeps the state.
            self.block_functions[index] = tf.function(
                lambda s, t, weight: model_ref().train_block(index, s, t, weight),
                jit_compile=True, autograph=False, reduce_retracing=True)
        return self.block_functions[index]

    def device(self, index):
        """`tf.device` scope of block `index` (a no-op when not placed).

        Not `tf.device(None)`, which would clear the device a
        `tf.distribute` replica runs on.
        """
        if not self.devices:
            return contextlib.nullcontext()
        return tf.device(self.devices[index])

    @contextlib.contextmanager
    def block_scope(self, index):
        """Block `index`'s device and name scope (`block_<i>`, 1-based)."""
        with self.device(index), tf.name_scope(f"block_{index + 1}"):
            yield


def placed_step(model, state, x, y, sample_weight):
    """The step of blocks placed on devices, not pipelined: block by block,
    each block's whole local step on its device (one XLA computation there
    when compiled), `s_i` and `t_i` handed between the devices in between.
    It computes what the model's sequential `train_step` computes: block
    i+1 gets the `s_i`, `t_i` from before block i's updates, and the
    metrics decode with the `h_i` read at the start of the step."""
    decoders = decoder_weights(model)
    s, t = x, model.targets(y)
    assoc_losses, ae_losses, applied = [], [], []
    for index in range(model.num_blocks):
        with state.block_scope(index):
            s, t, prediction, assoc, ae, block_applied = (
                state.block_step(model, index)(s, t, sample_weight))
        assoc_losses.append(assoc)
        ae_losses.append(ae)
        applied.append(block_applied)
    with state.device(model.num_blocks - 1):
        y_pred = decode(model, prediction, decoders)
    model.count_step(x)
    model.record_losses(assoc_losses, ae_losses, applied=(
        applied if model.on_nonfinite_loss == "skip" else None))
    return model.step_logs(model.compute_metrics(x, y, y_pred, sample_weight))


class _Buffers:
    """Per boundary: the activations, labels and weights handed on."""

    def __init__(self, model, state, x, y):
        spec = keras.KerasTensor((None,) + tuple(x.shape[1:]), dtype=x.dtype)
        self.x_spec = tf.TensorSpec(spec.shape, x.dtype)
        self.y_spec = tf.TensorSpec((None,) + tuple(y.shape[1:]), y.dtype)
        self.boundaries, self.examples = [], []
        for index, block in enumerate(model.blocks):
            spec = block.compute_output_spec(spec)
            with state.device(index):
                self.examples.append(
                    tf.Variable(0, dtype="int64", trainable=False,
                                name=f"examples_trained_{index + 1}"))
            if index + 1 == model.num_blocks:
                break
            with state.device(index + 1):
                self.boundaries.append({
                    "s": _empty_variable((None,) + tuple(spec.shape[1:]),
                                         spec.dtype),
                    "t": _empty_variable((None, block.label_units),
                                         block.label_encoder.compute_dtype),
                    "y": _empty_variable(self.y_spec.shape, y.dtype),
                    "sample_weight": _empty_variable((None,), "float32"),
                })

    def check(self, x, y):
        for name, value, spec in (("inputs", x, self.x_spec),
                                  ("labels", y, self.y_spec)):
            if (value.dtype != spec.dtype
                    or not spec.shape.is_compatible_with(value.shape)):
                raise ValueError(
                    f"A pipelined ALModel was first trained on {name} of "
                    f"{spec.shape} {spec.dtype.name} and now gets "
                    f"{value.shape} {value.dtype.name}; keep the format "
                    "(or make a new model)."
                )


def _empty(shape, dtype):
    """A batch of 0 examples of `shape` (batch dimension first)."""
    return tf.zeros([0] + tf.TensorShape(shape)[1:].as_list(), dtype)


def _empty_variable(shape, dtype):
    return tf.Variable(_empty(shape, dtype), shape=tf.TensorShape(shape),
                       trainable=False)


def pipelined_step(model, state, x, y, sample_weight):
    """One pipelined step; updates the loss trackers and compiled metrics."""
    if state.holder is None:
        with tf.init_scope():
            state.holder = _Buffers(model, state, x, y)
    buffers = state.holder
    buffers.check(x, y)
    if sample_weight is None:
        sample_weight = tf.ones(tf.shape(x)[:1])
    sample_weight = tf.reshape(tf.cast(sample_weight, "float32"), [-1])
    # Every read comes before every write (TF orders the ops on a variable
    # as written), and before any block updates its h_i.
    incoming = [(x, model.targets(y), y, sample_weight)]
    for boundary in buffers.boundaries:
        incoming.append(tuple(boundary[k].read_value() for k in _HANDED_ON))
    decoders = decoder_weights(model)

    outgoing, active, assoc_losses, ae_losses, applied = [], [], [], [], []
    for index in range(model.num_blocks):
        s_prev, t_prev, labels, weights = incoming[index]
        with state.block_scope(index):
            is_active = tf.shape(s_prev)[0] > 0
            s, t, prediction, assoc, ae, block_applied = tf.cond(
                is_active,
                lambda: _train(model, state, index, s_prev, t_prev, weights),
                lambda: _idle(model, index, buffers),
            )
        outgoing.append((s, t, labels, weights))
        active.append(tf.cast(is_active, "float32"))
        assoc_losses.append(assoc)
        ae_losses.append(ae)
        applied.append(block_applied)

    for index, boundary in enumerate(buffers.boundaries):
        with state.device(index + 1):
            for key, value in zip(_HANDED_ON, outgoing[index]):
                boundary[key].assign(value)

    model.record_losses(assoc_losses, ae_losses, weights=active, applied=(
        applied if model.on_nonfinite_loss == "skip" else None))
    _, _, labels, weights = incoming[-1]
    with state.device(model.num_blocks - 1):
        y_pred = decode(model, prediction, decoders)
    model.compute_metrics(None, labels, y_pred, weights)


def _train(model, state, index, s_prev, t_prev, sample_weight):
    buffers = state.holder
    s, t, prediction, assoc, ae, applied = state.block_step(
        model, index)(s_prev, t_prev, sample_weight)
    buffers.examples[index].assign_add(
        tf.cast(tf.shape(s_prev)[0], "int64"))
    s, t = _handed_on(buffers, index, s, t)
    return s, t, tf.cast(prediction, "float32"), assoc, ae, applied


def _idle(model, index, buffers):
    block = model.blocks[index]
    if index < len(buffers.boundaries):
        boundary = buffers.boundaries[index]
        s = _empty(boundary["s"].shape, boundary["s"].dtype)
        t = _empty(boundary["t"].shape, boundary["t"].dtype)
    else:
        s, t = _handed_on(buffers, index, None, None)
    prediction = tf.zeros([0, block.label_units], "float32")
    return (s, t, prediction, tf.constant(0.0), tf.constant(0.0),
            tf.constant([True, True]))


def _handed_on(buffers, index, s, t):
    """`s`, `t` in the buffer's dtypes; placeholders from the last block."""
    if index == len(buffers.boundaries):  # The last block hands nothing on.
        return tf.zeros([0]), tf.zeros([0])
    boundary = buffers.boundaries[index]
    return tf.cast(s, boundary["s"].dtype), tf.cast(t, boundary["t"].dtype)


def decoder_weights(model):
    """The values of every block's h_i weights, read now (at the start of a
    step, before any block's update): `decode`'s `decoders`."""
    return [
        (
            [tf.convert_to_tensor(v) for v in b.label_decoder.trainable_variables],
            [tf.convert_to_tensor(v)
             for v in b.label_decoder.non_trainable_variables],
        )
        for b in model.blocks
    ]


def decode(model, prediction, decoders):
    """h_L ... h_1 with the weights `decoder_weights` read."""
    t = prediction
    for block, (trainable, non_trainable) in zip(
            reversed(model.blocks), reversed(decoders)):
        t, _ = block.label_decoder.stateless_call(
            trainable, non_trainable, t)
    return model.scores(t)


def drain(model, state):
    """Finishes the batches still in the pipeline (L - 1 steps)."""
    buffers = state.holder
    if buffers is None or not buffers.boundaries:
        return
    if state.drain_function is None:
        model_ref = weakref.ref(model)  # The strategy keeps the state.

        def drain_step(x, y):
            pipelined_step(model_ref(), state, x, y, None)

        # Traced for any batch size: an input of static size 0 would let
        # Grappler fold the buffers' shapes to 0 in the whole step.
        state.drain_function = drain_step if model.run_eagerly else tf.function(
            drain_step, autograph=False,
            input_signature=[buffers.x_spec, buffers.y_spec])
    x = _empty(buffers.x_spec.shape, buffers.x_spec.dtype)
    y = _empty(buffers.y_spec.shape, buffers.y_spec.dtype)
    for _ in buffers.boundaries:
        state.drain_function(x, y)
