"""Share of training time spent waiting for input, CIFAR-10 with augmentation.

    python benchmarks/input_pipeline.py --json=/tmp/input_pipeline.json

CIFAR-10 cannot be had offline here, so the data are synthetic and
CIFAR-shaped: `--num_images` random 32x32x3 uint8 images stored PNG-encoded
with their labels, as TFDS stores CIFAR-10.  They go through the pipeline
`datasets.load("cifar10", augment=True)` builds (`datasets.pipelines`:
shuffle, PNG decoding, the original augmentation and per-image
standardization, batching, prefetch) into the models of configs/cifar10.py
(`--models`, AL and BP, compiled as `train.py` does, XLA).

How it is measured, per model, in one process: Keras' compiled train
function takes `--steps` steps from the pipeline, then `--steps` steps
from one batch held in memory (no input work), alternating, `--repeats`
rounds after a warm-up; with the medians `t_pipeline` and `t_memory` per
step,

    waiting share = 1 - t_memory / t_pipeline

the part of a step that the input costs (time blocked in `get_next`, and
the training slowed by the input threads sharing the CPU).  Target: <= 5%.
"""

import json
import os
import statistics

from absl import app, flags

import step_timing

_MODELS = flags.DEFINE_list("models", ["mlp", "cnn"],
                            "Models of configs/cifar10.py.")
_METHODS = flags.DEFINE_list("methods", ["al", "bp"], "Methods.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 10_000, "Synthetic images.")
_STEPS = flags.DEFINE_integer("steps", 40, "Steps per timed round.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed rounds.")
_LIGHT = flags.DEFINE_bool("light", False, "The configs' light bridges "
                           "(faster steps: a harder target for the input).")
_JSON = flags.DEFINE_string("json", None, "Write the rows to this file.")


def synthetic_cifar10(num_images, batch_size, seed=0):
    """Batched training data through the CIFAR-10 pipeline, from PNGs."""
    import numpy as np
    import tensorflow as tf

    from al_keras.data import augmentation, datasets

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, num_images).astype("int32")
    pngs = tf.map_fn(tf.io.encode_png, tf.constant(images),
                     fn_output_signature=tf.string)
    encoded = tf.data.Dataset.from_tensor_slices((pngs, labels))
    data = datasets.Data(encoded, encoded.take(batch_size), input_shape=(32, 32, 3),
                         num_classes=10, num_train=num_images, num_test=batch_size)

    def decode(png, label):
        return tf.ensure_shape(tf.io.decode_png(png, channels=3), (32, 32, 3)), label

    return datasets.pipelines(
        data, batch_size=batch_size, test_batch_size=batch_size, seed=seed,
        augment=augmentation.augment_cifar, decode=decode,
        preprocess=lambda x: augmentation.standardize(tf.cast(x, tf.float32) / 255.0))


def measure(model_name, method):
    import keras

    import al_keras
    from al_keras.training import config_lib

    path = os.path.join(os.path.dirname(__file__), "..", "configs", "cifar10.py")
    config = config_lib.load_config_module(path).get_config(
        f"model={model_name},method={method}" + (",light" if _LIGHT.value else ""))
    data = synthetic_cifar10(_NUM_IMAGES.value, config.batch_size)
    model = al_keras.models.get(model_name, method=method, input_shape=(32, 32, 3),
                                num_classes=10, **config.model_options.to_dict())
    model.compile(optimizer=keras.optimizers.Adam(config.lr), metrics=["accuracy"],
                  jit_compile=config.jit_compile)
    pipeline = step_timing.step_timer(model, iter(data.train.repeat()))
    memory = step_timing.step_timer(model, step_timing.one_batch(*next(iter(data.train))))
    pipeline(5)  # Compiles, fills buffers.
    memory(5)
    rounds = {"pipeline": [], "memory": []}
    for _ in range(_REPEATS.value):
        rounds["pipeline"].append(pipeline(_STEPS.value))
        rounds["memory"].append(memory(_STEPS.value))
    t_pipeline = statistics.median(rounds["pipeline"])
    t_memory = statistics.median(rounds["memory"])
    return {"model": model_name, "method": method, "batch_size": config.batch_size,
            "light": _LIGHT.value,
            "ms_per_step_pipeline": round(t_pipeline * 1e3, 2),
            "ms_per_step_memory": round(t_memory * 1e3, 2),
            "waiting_share": round(max(0.0, 1 - t_memory / t_pipeline), 4)}


def main(argv):
    del argv
    rows = []
    print("| model | method | ms/step, pipeline | ms/step, batch in memory | "
          "waiting share |")
    print("|---|---|---|---|---|")
    for model_name in _MODELS.value:
        for method in _METHODS.value:
            row = measure(model_name, method)
            rows.append(row)
            print(f"| {model_name}{' light' if _LIGHT.value else ''} | {method} | "
                  f"{row['ms_per_step_pipeline']} | "
                  f"{row['ms_per_step_memory']} | {row['waiting_share']:.1%} |",
                  flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"num_images": _NUM_IMAGES.value, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
