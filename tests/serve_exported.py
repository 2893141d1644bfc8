"""Serves an exported SavedModel without al_keras; used by test_export.py.

Usage: python serve_exported.py EXPORT_DIR INPUTS.npy OUTPUT.npz

al_keras is made unimportable first, so the export is shown to need only
TensorFlow.  Writes, for each signature, its SavedModel output
(`saved/<name>`) and its TFLite output (`tflite/<name>`).
"""

import sys
import warnings

import without_al_keras  # noqa: F401  # isort: skip (first: al_keras unimportable)

import numpy as np
import tensorflow as tf


def main(export_dir, inputs_path, output_path):
    x = np.load(inputs_path)
    loaded = tf.saved_model.load(export_dir)
    names = sorted(loaded.signatures)
    results = {}
    for name in names:
        out = loaded.signatures[name](inputs=tf.constant(x))
        results[f"saved/{name}"] = out["probabilities"].numpy()

    for name in names:
        # One TFLite model per signature (the converter merges several
        # signatures of one SavedModel into one).
        converter = tf.lite.TFLiteConverter.from_saved_model(
            export_dir, signature_keys=[name]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_content=converter.convert())
        runner = interpreter.get_signature_runner(name)
        results[f"tflite/{name}"] = runner(inputs=x)["probabilities"]
    assert "al_keras" not in sys.modules
    np.savez(output_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:4])
