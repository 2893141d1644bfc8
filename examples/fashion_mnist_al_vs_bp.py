"""A user's script: the AL MLP vs its BP twin on Fashion-MNIST, Keras-style.

    apt-get install dataset-fashion-mnist        # Debian: idx files, offline
    python examples/fashion_mnist_al_vs_bp.py al 12000 8
    python examples/fashion_mnist_al_vs_bp.py bp 12000 8

Arguments: method (al | bp), number of training examples, max epochs.
Trains `al_keras.models.get("mlp")` with Adam(1e-3), validation_split=0.1,
EarlyStopping, ModelCheckpoint(.keras), CSVLogger and BackupAndRestore
(into /tmp/fashion_mnist_<method>), evaluates on the 10,000 test images,
reloads the best checkpoint, exports a SavedModel and serves it in a fresh
process that does not import al_keras.  Prints one JSON line.
"""

import gzip
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np

import al_keras

DATA_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx(name):
    path = os.path.join(DATA_DIR, name)
    if not os.path.exists(path):
        sys.exit(f"{path} not found: install Debian's dataset-fashion-mnist or "
                 "set FASHION_MNIST_DIR to a folder with the idx .gz files.")
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main(method, n_train, epochs):
    x = read_idx("train-images-idx3-ubyte.gz")[:n_train].astype("float32") / 255.0
    y = read_idx("train-labels-idx1-ubyte.gz")[:n_train]
    x_test = read_idx("t10k-images-idx3-ubyte.gz").astype("float32") / 255.0
    y_test = read_idx("t10k-labels-idx1-ubyte.gz")
    work = f"/tmp/fashion_mnist_{method}"
    os.makedirs(work, exist_ok=True)

    keras.utils.set_random_seed(0)
    model = al_keras.models.get("mlp", input_shape=(28, 28), num_classes=10,
                                method=method)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    start = time.time()
    model.fit(x, y, validation_split=0.1, epochs=epochs, batch_size=32, verbose=2,
              callbacks=[
                  keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True),
                  keras.callbacks.ModelCheckpoint(f"{work}/best.keras", save_best_only=True),
                  keras.callbacks.CSVLogger(f"{work}/log.csv"),
                  keras.callbacks.BackupAndRestore(f"{work}/backup"),
              ])
    seconds = time.time() - start
    accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    best = keras.models.load_model(f"{work}/best.keras")
    best_accuracy = best.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]

    model.export(f"{work}/saved_model", overwrite=True)
    np.save(f"{work}/x.npy", x_test[:100])
    served = subprocess.run([sys.executable, "-c", f"""
import sys, numpy as np, tensorflow as tf
m = tf.saved_model.load({work + '/saved_model'!r})
p = m.signatures['serving_default'](inputs=tf.constant(np.load({work + '/x.npy'!r})))
assert 'al_keras' not in sys.modules
np.save({work + '/served.npy'!r}, p['probabilities'].numpy())
"""], capture_output=True, text=True)
    if served.returncode:
        sys.exit(served.stderr[-2000:])
    diff = np.abs(np.load(f"{work}/served.npy") - model.predict(x_test[:100], verbose=0))
    print(json.dumps(dict(method=method, test_accuracy=round(accuracy, 4),
                          best_checkpoint_accuracy=round(best_accuracy, 4),
                          train_seconds=round(seconds), served_max_abs_diff=float(diff.max()))))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("al", "bp"):
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
