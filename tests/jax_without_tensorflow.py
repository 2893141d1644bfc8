"""Every user-facing part of al_keras on JAX, with TensorFlow unimportable.

    python tests/jax_without_tensorflow.py WORKDIR

Prints one JSON line of what it measured; tests/test_backends.py checks it.
"""

import without_tensorflow  # noqa: F401  # isort: skip (first: no TensorFlow)

import json
import os
import sys

import keras
import numpy as np
from sklearn.datasets import load_digits

import al_keras


def main(workdir):
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.data / 16).astype("float32")
    y = digits.target.astype("int32")
    train, test = slice(0, 1400), slice(1400, None)
    result = {"backend": keras.backend.backend(),
              "tensorflow_loaded": "tensorflow" in sys.modules}

    model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                hidden_units=128, label_units=64)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  steps_per_execution=4)
    history = model.fit(x[train], y[train], batch_size=32, epochs=3, verbose=0,
                        validation_data=(x[test], y[test]))
    result["val_accuracy"] = history.history["val_accuracy"][-1]
    result["steps"] = int(model.optimizer.iterations)
    result["exits"] = {str(i): model.evaluate(x[test], y[test], exit=i, verbose=0,
                                              return_dict=True)["accuracy"]
                       for i in range(1, model.num_blocks + 1)}
    result["evaluate_exits"] = {str(k): v for k, v in model.evaluate_exits(
        (x[test], y[test])).items()}
    al_keras.exits.calibrate(model, (x[test], y[test]), max_accuracy_drop=0.02)
    result["threshold"] = model.exit_threshold
    adaptive = model.predict(x[test], exit="adaptive", verbose=0)
    result["adaptive_accuracy"] = float(np.mean(
        adaptive["probabilities"].argmax(-1) == y[test]))
    result["adaptive_mean_exit"] = float(adaptive["exit"].mean())

    path = os.path.join(workdir, "digits.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    result["reloaded_max_difference"] = float(np.abs(
        loaded.predict(x[test], verbose=0) - model.predict(x[test], verbose=0)).max())
    result["reloaded_threshold"] = loaded.exit_threshold
    loaded.fit(x[:64], y[:64], batch_size=32, verbose=0)
    result["reloaded_steps"] = int(loaded.optimizer.iterations)

    built = {}
    for name, shape, options in (
            ("mlp", (28, 28, 1), {}), ("cnn", (28, 28, 1), {}), ("vgg", (32, 32, 3), {}),
            ("resnet20", (32, 32, 3), {}),
            ("lstm", (12,), {"vocab_size": 30, "embedding_dim": 8, "lstm_units": 8}),
            ("transformer", (12,), {"vocab_size": 30, "embedding_dim": 8, "num_heads": 2,
                                    "intermediate_dim": 16})):
        net = al_keras.models.get(name, input_shape=shape, num_classes=10, **options)
        net.compile(optimizer="adam")
        batch = (np.random.default_rng(0).integers(1, 30, (8,) + shape).astype("int32")
                 if name in ("lstm", "transformer")
                 else np.random.default_rng(0).random((8,) + shape).astype("float32"))
        net.fit(batch, np.arange(8) % 10, batch_size=8, verbose=0)
        built[name] = list(net.predict(batch, verbose=0).shape)
    result["zoo"] = built
    try:
        model.export(os.path.join(workdir, "export"))
        result["export"] = "exported"
    except ImportError as error:
        result["export"] = str(error)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
