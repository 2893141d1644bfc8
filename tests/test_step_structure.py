"""Structure of AL's training step: one block's tape and activations at a time.

Not timings: what the step holds and in what order its ops may run, read
from a step run eagerly (live tapes counted) and from the traced step's
graph (op ancestry).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras.core.trainers import tensorflow as tf_trainer

_GRADIENT_TYPES = {"MatMul", "Conv2DBackpropFilter", "Conv2DBackpropInput"}
_FORWARD_TYPES = {"MatMul", "Conv2D"}


def _model():
    model = al_keras.models.get(
        "cnn", input_shape=(8, 8, 1), num_classes=10, filters=(4, 4, 8, 8),
        label_units=8, bridge_multiplier=1, bridge_pool_size=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    return model


def _batch():
    rng = np.random.default_rng(0)
    return (rng.random((16, 8, 8, 1)).astype("float32"),
            rng.integers(0, 10, 16).astype("int32"))


def test_eager_step_holds_one_tape_at_a_time(monkeypatch):
    live, entered, most = [0], [], [0]

    class CountingTape(tf.GradientTape):
        def __enter__(self):
            live[0] += 1
            most[0] = max(most[0], live[0])
            entered.append(tf.get_current_name_scope())
            return super().__enter__()

        def gradient(self, *args, **kwargs):
            grads = super().gradient(*args, **kwargs)
            live[0] -= 1  # A non-persistent tape is released by gradient().
            return grads

    monkeypatch.setattr(tf, "GradientTape", CountingTape)
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    x, y = _batch()
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert most[0] == 1 and live[0] == 0
    # Two tapes per block: its auto-encoder, then (after every label side)
    # its associated loss, block by block.
    blocks = model.num_blocks
    assert len(entered) == 2 * blocks
    assert [s.rsplit("/", 1)[-1] for s in entered] == (
        [f"block_{i}_auto_encoder" for i in range(1, blocks + 1)]
        + [f"block_{i}_associated" for i in range(1, blocks + 1)])


def _traced_graph(model):
    x, y = _batch()
    step = tf.function(lambda x, y: model.train_step((x, y)))
    return step.get_concrete_function(
        tf.TensorSpec(x.shape, x.dtype), tf.TensorSpec(y.shape, y.dtype)).graph


def _ancestors(op):
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _blocks_wait_for_previous_gradients(graph, num_blocks):
    """Whether every forward op of block k's input side comes after every
    gradient op of block k-1's: [True/False per k >= 2]."""
    ops = graph.get_operations()
    answers = []
    for k in range(2, num_blocks + 1):
        forward = [op for op in ops if op.type in _FORWARD_TYPES
                   and f"/block_{k}_associated/" in op.name
                   and not op.name.startswith("gradient_tape/")]
        # (Less one the gradient function makes and nothing uses: that of
        # block k-1's first layer towards its stop-gradient input, pruned
        # when the graph runs.)
        previous = {op for op in ops if op.type in _GRADIENT_TYPES
                    and op.name.startswith("gradient_tape/")
                    and f"/block_{k - 1}_associated/" in op.name
                    and any(out.consumers() for out in op.outputs)}
        assert forward and previous, f"no ops found for block {k}"
        answers.append(all(previous <= _ancestors(op) for op in forward))
    return answers


@pytest.mark.slow
def test_traced_step_starts_a_block_after_the_previous_blocks_gradients():
    """So no two blocks' activations are held for backward passes at once."""
    model = _model()
    graph = _traced_graph(model)
    assert _blocks_wait_for_previous_gradients(graph, model.num_blocks) == [
        True] * (model.num_blocks - 1)


@pytest.mark.slow
def test_the_ordering_check_sees_a_step_without_the_ordering(monkeypatch):
    monkeypatch.setattr(tf_trainer, "_after", lambda tensors, value: value)
    model = _model()
    graph = _traced_graph(model)
    assert not any(_blocks_wait_for_previous_gradients(graph, model.num_blocks))
