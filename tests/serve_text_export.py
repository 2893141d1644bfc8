"""Serves an exported text model on raw strings without al_keras; used by test_text.py.

Usage: python serve_text_export.py EXPORT_DIR TEXTS.json OUTPUT.npz

al_keras is made unimportable first.  Writes each string signature's
probabilities (`saved/<name>`) for the texts; `token_ids` (the texts'
ids, which the test gives in TEXTS.json too) through the `token_ids`
signature (`saved/token_ids`) and through its TFLite conversion with
TFLite's built-in ops (`tflite/token_ids`, or `tflite_error`); and
`wrong_input_error`: the type and first line of the error that a float
tensor given to the string signature raises.
"""

import json
import sys
import warnings

import without_al_keras  # noqa: F401  # isort: skip (first: al_keras unimportable)

import numpy as np
import tensorflow as tf


def main(export_dir, texts_path, output_path):
    with open(texts_path) as f:
        given = json.load(f)
    texts, ids = given["texts"], np.array(given["token_ids"], np.int32)
    loaded = tf.saved_model.load(export_dir)
    results = {}
    for name in sorted(set(loaded.signatures) - {"token_ids"}):
        _, named = loaded.signatures[name].structured_input_signature
        extra = {"threshold": tf.constant(0.5)} if "threshold" in named else {}
        out = loaded.signatures[name](text=tf.constant(texts), **extra)
        results[f"saved/{name}"] = out["probabilities"].numpy()
        if "exit" in out:
            results[f"saved/{name}/exit"] = out["exit"].numpy()
    token_ids = loaded.signatures["token_ids"]
    results["saved/token_ids"] = token_ids(inputs=tf.constant(ids))["probabilities"].numpy()
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            export_dir, signature_keys=["token_ids"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_content=converter.convert())
        runner = interpreter.get_signature_runner("token_ids")
        results["tflite/token_ids"] = runner(inputs=ids)["probabilities"]
    except Exception as e:  # What TFLite cannot convert is the result.
        results["tflite_error"] = np.array(f"{type(e).__name__}: {e}"[:2000])
    try:
        loaded.signatures["serving_default"](text=tf.constant([1.0, 2.0]))
        results["wrong_input_error"] = np.array("none")
    except Exception as e:  # The error is the result: reported to the test.
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        results["wrong_input_error"] = np.array(f"{type(e).__name__}: {first}")
    assert "al_keras" not in sys.modules
    np.savez(output_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:4])
