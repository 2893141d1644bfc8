"""Serves several exported SavedModels without al_keras, in one process.

Usage: python serve_exports.py MANIFEST.json OUTPUT.npz

MANIFEST.json maps a key to `{"export_dir": ..., "inputs": ...}` (an `.npy`
batch).  al_keras is made unimportable first (without_al_keras); then
OUTPUT.npz gets `<key>/<signature>` (each signature's `probabilities`) for
every export.  Only the SavedModels are
served: serve_exported.py covers the TFLite conversion.
"""

import json
import sys

import without_al_keras  # noqa: F401  # isort: skip (first: al_keras unimportable)

import numpy as np
import tensorflow as tf


def main(manifest_path, output_path):
    with open(manifest_path) as f:
        manifest = json.load(f)
    assert any(isinstance(finder, without_al_keras._Block) for finder in sys.meta_path)
    results = {}
    for key, entry in manifest.items():
        x = tf.constant(np.load(entry["inputs"]))
        loaded = tf.saved_model.load(entry["export_dir"])
        for name, signature in loaded.signatures.items():
            _, named = signature.structured_input_signature
            extra = {"threshold": tf.constant(0.5)} if "threshold" in named else {}
            results[f"{key}/{name}"] = signature(inputs=x, **extra)["probabilities"].numpy()
    assert "al_keras" not in sys.modules
    np.savez(output_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:3])
