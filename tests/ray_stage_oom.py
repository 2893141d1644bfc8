"""A RayPipeline stage that runs out of memory: Ray's memory monitor kills it.

Usage: python ray_stage_oom.py OUTPUT.json  (used by test_ray_pipeline.py).
A local Ray whose memory monitor kills a worker once the node uses more
than what it uses now plus 3 GiB (RAY_memory_usage_threshold); stage 1 of
a 2-stage MLP then trains on batches whose activations need several GiB.
OUTPUT.json gets the error fit raised, in how many seconds, and whether the
driver's model still predicts what it did before that fit.
"""

import json
import os
import sys
import time

import numpy as np

HEADROOM = 3 * 2**30


def _threshold():
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    total, available = info["MemTotal"], info["MemAvailable"]
    return min(0.99, (total - available + HEADROOM) / total)


def main(output):
    os.environ["RAY_memory_usage_threshold"] = f"{_threshold():.4f}"
    os.environ["RAY_memory_monitor_refresh_ms"] = "100"
    import keras
    import ray

    import al_keras

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    try:
        strategy = al_keras.distribute.RayPipeline(num_stages=2, jit_compile=False)
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                        hidden_units=4096, label_units=16)
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
        rng = np.random.default_rng(0)
        x = rng.random((8 * 65536, 64), dtype="float32")
        y = rng.integers(0, 10, len(x))
        before = model.predict(x[:100], verbose=0)
        start = time.time()
        try:
            model.fit(x, y, batch_size=65536, epochs=1, verbose=0)
            error = None
        except al_keras.distribute.StageFailedError as e:
            error = str(e)
        result = {"error": error, "seconds": time.time() - start,
                  "threshold": os.environ["RAY_memory_usage_threshold"],
                  "model_unchanged": bool(np.allclose(model.predict(x[:100], verbose=0),
                                                      before))}
        with open(output, "w") as f:
            json.dump(result, f)
        strategy.shutdown()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
