"""`BlockParallel` on JAX, in a process of its own with 4 host CPU devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 KERAS_BACKEND=jax \
        python tests/jax_block_parallel.py

Prints one `RESULT {json}` line; tests/test_jax_block_parallel.py checks it:
the pipelined and the placed (not pipelined) fits of 3 blocks on 3 devices
against the same model's sequential fit (2 epochs, sample weights), then
evaluate, predict and an eager call; where the blocks' values live,
`placement="auto"` and `describe()`, and the one-line errors.
"""

import contextlib
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import al_keras  # noqa: E402
from al_keras import distribute  # noqa: E402

OPTIONS = dict(num_blocks=3, hidden_units=64, label_units=32)


def make(strategy=None, **options):
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                    **dict(OPTIONS, **options))
        model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    return model


def devices_of(model):
    """Per block, the devices of its variables and of its optimizers' slots."""
    def ids(variables):
        return sorted({d.id for v in variables for d in v.value.devices()})
    return [[ids(block.variables),
             ids(model.assoc_optimizers[i].variables + model.ae_optimizers[i].variables)]
            for i, block in enumerate(model.blocks)]


def against_sequential(pipeline):
    (x, y), (x_test, y_test) = al_keras.data.load_digits()
    x, y = x[:1013], y[:1013]  # 31 batches of 32 and one of 21.
    weights = np.random.default_rng(0).uniform(0.5, 1.5, size=len(x)).astype("float32")
    keras.utils.set_random_seed(1)
    sequential = make()
    strategy = distribute.BlockParallel(jax.devices()[:3], placement=[0, 1, 2],
                                        pipeline=pipeline)
    placed = make(strategy)
    sequential.build((None, 64))
    placed.build((None, 64))
    built_on = devices_of(placed)
    # (set_weights writes the values on JAX's default device; fit places
    # them on their blocks' devices again.)
    placed.set_weights(sequential.get_weights())
    fits = [m.fit(x, y, sample_weight=weights, batch_size=32, epochs=2,
                  shuffle=False, verbose=0) for m in (sequential, placed)]
    trained_on = devices_of(placed)
    # An eager call hands the activations from device to device.
    eager = [np.asarray(m(jax.numpy.asarray(x_test[:64]))) for m in (sequential, placed)]
    evaluations = [m.evaluate(x_test, y_test, verbose=0, return_dict=True)
                   for m in (sequential, placed)]
    predictions = [m.predict(x_test[:64], verbose=0) for m in (sequential, placed)]
    return {
        "max_weight_difference": max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(sequential.get_weights(), placed.get_weights())),
        "weights_moved": max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(sequential.get_weights(), make().get_weights())),
        "examples_trained": strategy.examples_trained(),
        "iterations": [int(m.optimizer.iterations.value) for m in (sequential, placed)],
        "history": [{k: fit.history[k] for k in ("loss", "assoc_loss_3", "ae_loss_1",
                                                  "accuracy")} for fit in fits],
        "evaluate": evaluations,
        "prediction_difference": float(np.max(np.abs(predictions[0] - predictions[1]))),
        "eager_difference": float(np.max(np.abs(eager[0] - eager[1]))),
        "built_on": built_on,
        "trained_on": trained_on,
        "placement": strategy.placement,
    }


def auto_placement():
    (x, y), _ = al_keras.data.load_digits()
    strategy = distribute.BlockParallel(jax.devices()[:2])
    model = make(strategy, num_blocks=4)
    history = model.fit(x[:640], y[:640], batch_size=32, epochs=1, verbose=0)
    return {"placement": strategy.placement, "describe": strategy.describe(),
            "block_costs": strategy.block_costs,
            "predicted_speedup": strategy.predicted_speedup,
            "examples_trained": strategy.examples_trained(),
            "trained_on": devices_of(model),
            "accuracy": history.history["accuracy"][-1]}


def errors():
    found = {}
    attempts = {
        "device": lambda: distribute.BlockParallel(["gpu:7"]),
        "jit": lambda: distribute.BlockParallel(jit_compile=False),
        "placement": lambda: make(distribute.BlockParallel(
            jax.devices()[:2], placement=[0, 1])).build((None, 64)),
        "num_devices": lambda: distribute.make_strategy("blocks", num_devices=9),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            found[name] = None
        except ValueError as error:
            found[name] = str(error)
    return found


if __name__ == "__main__":
    result = {"devices": len(jax.devices()),
              "pipelined": against_sequential(True),
              "placed": against_sequential(False),
              "auto": auto_placement(),
              "errors": errors()}
    print("RESULT " + json.dumps(result))
