"""Train the CIFAR-10 VGG and ResNet-20 configs, AL and BP, for a fixed time.

    python benchmarks/gpu_check.py [--seconds_per_run=110] [--smoke]

Meant for a machine with one GPU (benchmarks/gpu_check.sh runs it); it runs
on a CPU too, slowly.  No CIFAR-10 can be reached from the project's
machines, so the data is SYNTHETIC and CIFAR-shaped: 50,000 training and
2,000 test images of 32x32x3 in 10 classes, each class a fixed random
pattern plus noise (a learnable task, so accuracy shows that training
works; it says nothing about CIFAR accuracy).  Each of the four runs uses
its config's model, options, batch size and learning rate (constant), trains
epochs of 200 steps until `--seconds_per_run` is spent, and reports test
accuracy (every exit for AL) and training examples/s measured after the
first epoch (which includes tracing).  `--smoke` shrinks the models (no
bridge hidden layer, narrow labels, epochs of 5 steps, a small test set)
to check the script itself on a CPU in about a minute.
"""

import os
import time

import keras
import tensorflow as tf
from absl import app, flags

import al_keras
from al_keras.training import config_lib

_SECONDS = flags.DEFINE_float("seconds_per_run", 110.0, "Training time of each run.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Small models: check the script quickly.")
_STEPS_PER_EPOCH = 200
_VARIANTS = (("vgg", "al"), ("vgg", "bp"), ("resnet20", "al"), ("resnet20", "bp"))
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cifar10_config(arg):
    path = os.path.join(_ROOT, "configs", "cifar10.py")
    return config_lib.load_config_module(path).get_config(arg)


def synthetic_cifar(num, seed, batch_size):
    """A learnable CIFAR-shaped dataset: class pattern + noise, standardized."""
    patterns = tf.random.stateless_uniform((10, 32, 32, 3), seed=(7, 7))
    labels = tf.random.stateless_uniform((num,), seed=(seed, 1), maxval=10,
                                         dtype=tf.int32)

    def example(index, label):
        noise = tf.random.stateless_uniform((32, 32, 3), seed=(seed, index))
        image = 0.5 * tf.gather(patterns, label) + 0.5 * noise
        return tf.image.per_image_standardization(image), label

    data = tf.data.Dataset.from_tensor_slices((tf.range(num), labels))
    return (data.map(example, num_parallel_calls=tf.data.AUTOTUNE)
            .cache().batch(batch_size).prefetch(tf.data.AUTOTUNE))


class TimeLimit(keras.callbacks.Callback):
    """Stops training after `seconds`; records each epoch's duration."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.start, self.epoch_times = time.perf_counter(), []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_times.append(time.perf_counter() - self.epoch_start)
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def main(argv):
    del argv
    print("devices:", [d.name for d in tf.config.list_physical_devices()])
    print("data: SYNTHETIC CIFAR-shaped (no CIFAR-10 is reachable here)")
    steps = 5 if _SMOKE.value else _STEPS_PER_EPOCH
    rows = []
    for model_name, method in _VARIANTS:
        config = _cifar10_config(f"model={model_name},method={method}")
        options = config.model_options.to_dict()
        if _SMOKE.value:
            options.update(bridge_multiplier=0, label_units=16)
        keras.utils.set_random_seed(config.seed)
        model = al_keras.models.get(model_name, input_shape=(32, 32, 3),
                                    num_classes=10, method=method, **options)
        model.compile(optimizer=keras.optimizers.Adam(config.lr), metrics=["accuracy"],
                      jit_compile=config.jit_compile)
        train = synthetic_cifar(50_000, 0, config.batch_size).repeat()
        test = synthetic_cifar(200 if _SMOKE.value else 2_000, 1, 200)
        limit = TimeLimit(_SECONDS.value)
        model.fit(train, epochs=10_000, steps_per_epoch=steps, callbacks=[limit],
                  verbose=0)
        steady = limit.epoch_times[1:] or limit.epoch_times
        examples_per_second = steps * config.batch_size / (sum(steady) / len(steady))
        accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
        exits = ""
        if method == "al":
            exits = ", ".join(
                f"{model.evaluate(test, exit=i, verbose=0, return_dict=True)['accuracy']:.3f}"
                for i in range(1, model.num_blocks + 1))
        rows.append((model_name, method, len(limit.epoch_times), accuracy, exits,
                     examples_per_second))
        print(f"done {model_name} {method}", flush=True)
        keras.backend.clear_session()
    print(f"| model | method | epochs ({steps} steps) | synthetic test accuracy | exits "
          "| train examples/s |")
    print("|---|---|---|---|---|---|")
    for name, method, epochs, accuracy, exits, speed in rows:
        print(f"| {name} | {method} | {epochs} | {accuracy:.3f} | {exits or '-'} | {speed:,.0f} |")


if __name__ == "__main__":
    app.run(main)
