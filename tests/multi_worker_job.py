"""One worker of the MultiWorkerMirroredStrategy test (test_distribute.py).

Usage: TF_CONFIG=... python multi_worker_job.py OUTPUT.npz

Trains the digits MLP for a few steps with the global batch split over the
workers, validating each epoch, and writes the final weights and the logs.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()  # Before any op.

import keras  # noqa: E402
import numpy as np  # noqa: E402

import al_keras  # noqa: E402

GLOBAL_BATCH = 64
STEPS = 4


def main(output_path):
    (x, y), _ = al_keras.data.load_digits()
    x, y = x[: GLOBAL_BATCH * STEPS], y[: GLOBAL_BATCH * STEPS]
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    dataset = (tf.data.Dataset.from_tensor_slices((x, y))
               .batch(GLOBAL_BATCH).with_options(options))
    keras.utils.set_random_seed(0)  # The same initial weights on each worker.
    with strategy.scope():
        model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                    hidden_units=64, label_units=32)
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      metrics=["accuracy"])
    history = model.fit(dataset, epochs=2, validation_data=dataset, verbose=0)
    np.savez(output_path, *model.get_weights(),
             loss=np.array(history.history["loss"]),
             val_accuracy=np.array(history.history["val_accuracy"]),
             replicas=strategy.num_replicas_in_sync)


if __name__ == "__main__":
    main(sys.argv[1])
