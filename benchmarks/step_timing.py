"""Timing Keras' compiled train function: shared by the benchmarks.

No flags here, so that any benchmark script can import it.
"""

import time


def one_batch(x, y):
    """An iterator yielding the batch `(x, y)` forever, held in memory."""
    import tensorflow as tf

    return iter(tf.data.Dataset.from_tensors((x, y)).cache().repeat())


def step_timer(model, iterator):
    """`run(steps)`: seconds per step of `model`'s compiled train function,
    taking its batches from `iterator`, waiting for the last step."""
    model.make_train_function()

    def run(steps):
        start = time.perf_counter()
        for _ in range(steps):
            logs = model.train_function(iterator)
        float(logs["loss"])  # Waits for the last step.
        return (time.perf_counter() - start) / steps

    return run
