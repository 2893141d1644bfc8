"""Loads `.keras` files with `safe_mode=True`; used by test_safe_loading.py.

Usage: python load_keras_safely.py MANIFEST.json OUTPUT.npz

MANIFEST.json maps a key to `{"path": ..., "inputs": ...}` (a `.keras` file
and an `.npy` batch).  For each key, in this fresh process, the file is
loaded with `keras.models.load_model(path, safe_mode=True)` and OUTPUT.npz
gets `<key>/full` (class probabilities), `<key>/exit_<i>` for an ALModel's
shortcut paths, `<key>/iterations` (the step counts of every optimizer, the
model's first), and `<key>/error` (the load's error message, if it failed;
then nothing else for that key).  One failing file does not stop the others.
"""

import json
import sys

import keras
import numpy as np

import al_keras


def optimizers(model):
    """The model's optimizer, then (ALModel) every block optimizer."""
    found = [model.optimizer]
    if isinstance(model, al_keras.ALModel):
        found += model.assoc_optimizers + model.ae_optimizers
    return found


def probabilities(model, x):
    """`{"full": ..., "exit_<i>": ...}`, every inference path of `model`."""
    paths = {"full": model(x, training=False)}
    if isinstance(model, al_keras.ALModel):
        for exit in range(1, model.num_blocks + 1):
            paths[f"exit_{exit}"] = model(x, training=False, exit=exit)
    return {k: keras.ops.convert_to_numpy(v) for k, v in paths.items()}


def _outputs(path, x):
    model = keras.models.load_model(path, safe_mode=True)
    return {
        "class": np.array(type(model).__name__),
        "iterations": np.array([int(o.iterations) for o in optimizers(model)]),
        **probabilities(model, x),
    }


def main(manifest_path, output_path):
    with open(manifest_path) as f:
        manifest = json.load(f)
    results = {}
    for key, entry in manifest.items():
        try:
            outputs = _outputs(entry["path"], np.load(entry["inputs"]))
        except Exception as e:  # Reported per file, checked by the test.
            outputs = {"error": np.array(f"{type(e).__name__}: {e}")}
        results.update({f"{key}/{name}": v for name, v in outputs.items()})
        keras.backend.clear_session()
    np.savez(output_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:3])
