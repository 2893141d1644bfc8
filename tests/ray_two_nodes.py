"""Trains a RayPipeline of 2 stages on a two-node Ray cluster on loopback.

Usage: python ray_two_nodes.py OUTPUT.json [leave]  (used by test_ray_pipeline.py).
Each node has one CPU and each stage needs one, so Ray must put one stage on
each node.  OUTPUT.json gets the stages' node ids, the examples each block
trained, and the validation accuracy.  With `leave`, the second node leaves
the cluster (all its processes killed) in the second epoch: OUTPUT.json gets
the error fit raised, the seconds from the node's leaving to it, and whether
the checkpoint of epoch 1 loads and predicts what the model did after epoch 1.
"""

import json
import os
import sys
import tempfile
import time

import keras
import numpy as np
from ray.cluster_utils import Cluster

import al_keras


class _LeaveAt(keras.callbacks.Callback):
    """Removes `node` from `cluster` at batch `batch` of epoch 2."""

    def __init__(self, cluster, node, batch):
        super().__init__()
        self.cluster, self.node, self.batch = cluster, node, batch
        self.epoch, self.left_at = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == self.batch and self.left_at is None:
            self.cluster.remove_node(self.node, allow_graceful=False)
            self.left_at = time.time()


def main(output, leave=False):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker_node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        strategy = al_keras.distribute.RayPipeline(
            num_stages=2, cpus_per_stage=1, address=cluster.address, jit_compile=False)
        (x, y), (x_test, y_test) = al_keras.data.load_digits()
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                        hidden_units=64, label_units=32, activation="tanh")
            model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        if not leave:
            history = model.fit(x, y, epochs=2, batch_size=32, verbose=0,
                                validation_data=(x_test, y_test))
            result = {"stage_nodes": [node for _, _, node in strategy.stage_hosts],
                      "examples_trained": strategy.examples_trained(),
                      "num_train": len(x), "describe": strategy.describe(),
                      "val_accuracy": history.history["val_accuracy"][-1]}
        else:
            path = os.path.join(tempfile.mkdtemp(), "epoch_{epoch}.keras")
            after_epoch_1 = []
            leaving = _LeaveAt(cluster, worker_node, batch=5)
            keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: (
                after_epoch_1.append(model.predict(x_test, verbose=0)) if epoch == 0 else None))
            try:
                model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[
                    keras.callbacks.ModelCheckpoint(path), keep, leaving])
                error = None
            except al_keras.distribute.StageFailedError as e:
                error, failed_at = str(e), time.time()
            loaded = keras.models.load_model(path.format(epoch=1))
            result = {"error": error,
                      "stage_nodes": [node for _, _, node in strategy.stage_hosts],
                      "worker_node": worker_node.node_id,
                      "seconds_to_error": error and failed_at - leaving.left_at,
                      "checkpoint_max_difference": float(np.abs(
                          loaded.predict(x_test, verbose=0) - after_epoch_1[0]).max())}
        with open(output, "w") as f:
            json.dump(result, f)
        strategy.shutdown()
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], leave=sys.argv[2:] == ["leave"])
