"""One stage of a `RayPipeline`: a process that trains a contiguous run of blocks.

`StageWorker` runs inside a Ray actor (its own Python process, its own
TensorFlow thread pools).  It rebuilds the `ALModel` from its Keras config,
owns the block optimizers of its blocks, and trains them with the model's own
local step (`ALModel.train_block`, both local losses, both updates), compiled
by XLA.  What it receives and hands on are forward activations only: the
batch (first stage) or the previous stage's `(s, t, sample_weight)`; no
gradient ever leaves a stage.

This module imports neither Ray nor TensorFlow at import time: the driver
imports it to name the class, the actor process does the work.
"""

import os
import socket
import time


class StageWorker:
    """Trains blocks `blocks` (indices into `model.blocks`) of a rebuilt model.

    Args:
        model_config: `keras.saving.serialize_keras_object(model)`.
        input_shape: one example's shape.
        optimizer_config: `keras.optimizers.serialize(model.optimizer)`.
        blocks: the indices of this stage's blocks, contiguous.
        last: whether this stage holds the model's last block (it hands
            nothing on).
        threads: TensorFlow intra- and inter-op threads of this process
            (0: TensorFlow's default).
        jit_compile: compile the stage's step with XLA.
        on_nonfinite_loss: `"stop"` or `"skip"`, as `ALModel.compile`.
        decode_predictions: decode each batch's prediction `b_L(s_L)` back
            through the stages' h_i (last stage first), for the driver's
            training metrics (e.g. accuracy).
    """

    def __init__(self, model_config, input_shape, optimizer_config, blocks, last,
                 threads=1, jit_compile=True, on_nonfinite_loss="stop",
                 decode_predictions=False):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        # Stages may share a GPU (fractional gpus_per_stage): each takes the
        # memory it uses, not all of it.
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        import keras

        import al_keras  # noqa: F401 (registers the serializable classes)
        from al_keras.core import labels as labels_lib
        from al_keras.core import optimizers as optimizers_lib

        self._labels = labels_lib
        self.blocks = list(blocks)
        self.first = self.blocks[0] == 0
        self.last = bool(last)
        model = keras.saving.deserialize_keras_object(model_config)
        model.build((None,) + tuple(input_shape))
        model.on_nonfinite_loss = on_nonfinite_loss
        self.model = model
        template = keras.optimizers.deserialize(optimizer_config)
        self.optimizers = {}
        for index in self.blocks:
            block = model.blocks[index]
            assoc = optimizers_lib.clone_optimizer(template, 1.0,
                                                   f"assoc_optimizer_{index + 1}")
            ae = optimizers_lib.clone_optimizer(template, model.ae_lr_multiplier,
                                                f"ae_optimizer_{index + 1}")
            assoc.build(block.input_side_variables)
            ae.build(block.label_side_variables)
            self.optimizers[index] = (ae, assoc)
        self._learning_rate = None

        # A closure, not a method: Ray adds an argument to an actor's methods.
        def train(s, t, sample_weight):
            losses, applied = [], []
            for index in self.blocks:
                s, t, prediction, assoc, ae, done = model.train_block(
                    index, s, t, sample_weight, self.optimizers[index])
                losses.append(tf.stack([assoc, ae]))
                applied.append(done)
            return s, t, prediction, tf.stack(losses), tf.stack(applied)

        self._step = tf.function(train, jit_compile=jit_compile, reduce_retracing=True)

        self._decode = tf.function(  # h_i of this stage's blocks, last block first.
            lambda t: model.decode_through(t, reversed(self.blocks)),
            jit_compile=jit_compile, reduce_retracing=True)
        self.decodes = bool(decode_predictions)

    def _follow(self, learning_rate):
        """Sets the block optimizers' rate from the driver's float rate."""
        if learning_rate is None or learning_rate == self._learning_rate:
            return
        for ae, assoc in self.optimizers.values():
            assoc.learning_rate = learning_rate
            ae.learning_rate = learning_rate * self.model.ae_lr_multiplier
        self._learning_rate = learning_rate

    def step(self, batches, decoding=None, learning_rate=None):
        """Trains this stage's blocks on a run of batches, one after the other.

        Args:
            batches: a list of `(x, y, sample_weight)` for the first stage,
                of the previous stage's `(s, t, sample_weight)` otherwise
                (numpy arrays); or None (nothing to train: the pipeline
                drains).
            decoding: with `decode_predictions`, the next stage's partly
                decoded predictions of earlier batches (a list of arrays),
                which this stage decodes on with its own h_i; or None.
            learning_rate: the driver's float learning rate, or None (a
                schedule, which each block optimizer follows by its own steps).

        Returns:
            `(handed_on, handed_back, stats)`: the `(s, t, sample_weight)` of
            each batch for the next stage (None from the last stage); the
            decoded predictions for the previous stage (None from the first
            one, whose fully decoded ones are `stats["decoded"]`); and
            `{"losses": (batches, blocks, 2) [assoc, ae], "applied": the
            same shape, bools, "examples": n, "busy_seconds": ...}`.
        """
        start = time.perf_counter()
        self._follow(learning_rate)
        handed_on, losses, applied, examples = [], [], [], 0
        decoded = [self._decode(t).numpy() for t in decoding or ()]
        for first, second, sample_weight in batches or ():
            if self.first:  # (x, y, w): the label side starts from one_hot(y).
                second = self._labels.to_one_hot(second, self.model.num_classes,
                                                 validate=False)
            s, t, prediction, loss, done = self._step(first, second, sample_weight)
            if not self.last:
                handed_on.append((s.numpy(), t.numpy(), sample_weight))
            elif self.decodes:  # b_L(s_L), decoded by the last stage's h_i.
                decoded.append(self._decode(prediction).numpy())
            losses.append(loss.numpy())
            applied.append(done.numpy())
            examples += len(sample_weight)
        stats = {"losses": losses, "applied": applied, "examples": examples,
                 "busy_seconds": time.perf_counter() - start}
        handed_back = decoded or None
        if self.first and self.decodes:
            stats["decoded"], handed_back = decoded, None
        return (handed_on if batches and not self.last else None), handed_back, stats

    # ------------------------------------------------------------------ state
    def _variables(self, index):
        ae, assoc = self.optimizers[index]
        return block_variables(self.model.blocks[index], assoc, ae)

    def get_state(self):
        """Every weight and optimizer variable of this stage's blocks, by block."""
        return read_state(self._variables, self.blocks)

    def set_state(self, state):
        """Loads what `get_state` returns (e.g. the driver's, before a fit)."""
        load_state(self._variables, state)

    def where(self):
        """(host name, process id, Ray node id) of this stage."""
        import ray

        return socket.gethostname(), os.getpid(), ray.get_runtime_context().get_node_id()


# A stage's state, the same on the stage and on the driver: per block index,
# {"block": its weights, "assoc": / "ae": its two optimizers' variables}.
def block_variables(block, assoc_optimizer, ae_optimizer):
    """The variables of one block's state, by part."""
    return {"block": list(block.weights), "assoc": list(assoc_optimizer.variables),
            "ae": list(ae_optimizer.variables)}


def read_state(variables_of, indices):
    """`{index: {part: [numpy values]}}` of `variables_of(index)` for each index."""
    return {index: {part: [v.numpy() for v in variables]
                    for part, variables in variables_of(index).items()}
            for index in indices}


def load_state(variables_of, state):
    """Assigns what `read_state` returned to `variables_of(index)`."""
    for index, parts in state.items():
        for part, variables in variables_of(index).items():
            for variable, value in zip(variables, parts[part], strict=True):
                variable.assign(value)
