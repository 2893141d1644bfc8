"""Serves an exported SavedModel without al_keras; used by test_export.py.

Usage: python serve_exported.py EXPORT_DIR INPUTS.npy OUTPUT.npz [THRESHOLD]

al_keras is made unimportable first, so the export is shown to need only
TensorFlow.  Writes, for each signature, its SavedModel output
(`saved/<name>`) and its TFLite output (`tflite/<name>`); for the adaptive
signatures also the exit each example took (`saved/<name>/exit`,
`tflite/<name>/exit`), `adaptive_threshold` called with THRESHOLD (default
0.5).
"""

import sys
import warnings

import without_al_keras  # noqa: F401  # isort: skip (first: al_keras unimportable)

import numpy as np
import tensorflow as tf


def main(export_dir, inputs_path, output_path, threshold="0.5"):
    x = np.load(inputs_path)
    loaded = tf.saved_model.load(export_dir)
    names = sorted(loaded.signatures)
    results = {}

    def inputs(name):
        _, named = loaded.signatures[name].structured_input_signature
        return (dict(inputs=x, threshold=np.float32(threshold)) if "threshold" in named
                else dict(inputs=x))

    def record(kind, name, out):
        results[f"{kind}/{name}"] = np.asarray(out["probabilities"])
        if "exit" in out:
            results[f"{kind}/{name}/exit"] = np.asarray(out["exit"])

    for name in names:
        record("saved", name, loaded.signatures[name](
            **{k: tf.constant(v) for k, v in inputs(name).items()}))

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
        record("tflite", name, runner(**inputs(name)))
    assert "al_keras" not in sys.modules
    np.savez(output_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:5])
