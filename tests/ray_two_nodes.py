"""Trains a RayPipeline of 2 stages on a two-node Ray cluster on loopback.

Usage: python ray_two_nodes.py OUTPUT.json (used by test_ray_pipeline.py).
Each node has one CPU and each stage needs one, so Ray must put one stage on
each node.  OUTPUT.json gets the stages' node ids, the examples each block
trained, and the validation accuracy.
"""

import json
import sys

import keras
from ray.cluster_utils import Cluster

import al_keras


def main(output):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
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
        history = model.fit(x, y, epochs=2, batch_size=32, verbose=0,
                            validation_data=(x_test, y_test))
        with open(output, "w") as f:
            json.dump({"stage_nodes": [node for _, _, node in strategy.stage_hosts],
                       "examples_trained": strategy.examples_trained(),
                       "num_train": len(x),
                       "val_accuracy": history.history["val_accuracy"][-1]}, f)
        strategy.shutdown()
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
