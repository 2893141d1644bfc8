"""Exports that never leave a mess, and served signatures that refuse bad inputs.

Run as a script (`python test_export_bad_input.py EXPORT_DIR OUT.json`), it
serves the exports of the test below without al_keras and records what each
careless input gives.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _first_line(call):
    try:
        call()
        return "ok"
    except Exception as e:  # The error is the result.
        return str(e).strip().splitlines()[0]


def serve(export_dir, output):
    """Each careless input's result (`ok` or the error's first line)."""
    import numpy as np
    import tensorflow as tf

    al = tf.saved_model.load(os.path.join(export_dir, "al"))
    text = tf.saved_model.load(os.path.join(export_dir, "text"))
    ones = tf.ones((2, 6))
    cases = {
        "exit_1 shape": lambda: al.signatures["exit_1"](inputs=tf.ones((2, 5))),
        "serving_default rank": lambda: al.signatures["serving_default"](inputs=tf.ones(6)),
        "adaptive nan": lambda: al.signatures["adaptive"](inputs=tf.fill((1, 6), np.nan)),
        "adaptive empty": lambda: al.signatures["adaptive"](inputs=tf.ones((0, 6))),
        "threshold nan": lambda: al.signatures["adaptive_threshold"](
            inputs=ones, threshold=tf.constant(np.nan, tf.float32)),
        "threshold -0.1": lambda: al.signatures["adaptive_threshold"](
            inputs=ones, threshold=tf.constant(-0.1)),
        "threshold 1.5": lambda: al.signatures["adaptive_threshold"](
            inputs=ones, threshold=tf.constant(1.5)),
        "token_ids -1": lambda: text.signatures["token_ids"](
            inputs=tf.constant([[2, -1, 0, 0, 0]])),
        "token_ids 12": lambda: text.signatures["token_ids"](
            inputs=tf.constant([[2, 12, 0, 0, 0]])),
        "token_ids 11": lambda: text.signatures["token_ids"](
            inputs=tf.constant([[2, 11, 0, 0, 0]])),
        "token_ids length 7": lambda: text.signatures["token_ids"](
            inputs=tf.zeros((1, 7), tf.int32)),
    }
    results = {name: _first_line(call) for name, call in cases.items()}
    results["token_ids spec"] = str(
        text.signatures["token_ids"].structured_input_signature[1]["inputs"].shape)
    assert "al_keras" not in sys.modules
    with open(output, "w") as f:
        json.dump(results, f)


@pytest.mark.slow
def test_served_signatures_refuse_careless_inputs_saying_what_they_take(tmp_path):
    import keras
    import numpy as np

    import al_keras

    model = al_keras.models.get("mlp", input_shape=(6,), num_classes=3, hidden_units=8,
                                label_units=4)
    model.export(tmp_path / "al")
    train = np.array(["a small dog", "a big cat", "the red car", "a blue truck"])
    vectorizer = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=5)
    vectorizer.adapt(train)
    assert vectorizer.vocabulary_size() == 12
    text = al_keras.models.get(
        "transformer", sequence_length=5, num_classes=2, vocab_size=12,
        preprocessor=vectorizer, embedding_dim=4, num_heads=2, intermediate_dim=4,
        label_units=4)
    text.export(tmp_path / "text")
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path), str(tmp_path / "out.json")],
        capture_output=True, text=True, timeout=300, cwd=HERE,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "out.json") as f:
        out = json.load(f)
    assert out.pop("token_ids spec") == "(None, 5)"
    ids = ("[`inputs`: token ids must be integers in [0, 12) (the model\\'s vocabulary; "
           "0 is padding); got ids from] [{}] [to] [{}]")
    threshold = ("[The exit threshold must be >= 0 (a confidence in [0, 1]; above 1: the full "
                 "path); got] [{}]")
    expected = {
        "exit_1 shape": "[`inputs` must have shape (batch, 6); got shape] [2 5]",
        "serving_default rank": "[`inputs` must have shape (batch, 6); got shape] [6]",
        "adaptive nan": "[`inputs` holds NaN or Inf; the model takes finite features.]",
        "adaptive empty": "ok",
        "threshold nan": threshold.format("nan"),
        "threshold -0.1": threshold.format("-0.1"),
        "threshold 1.5": "ok",  # Above 1: the full path.
        "token_ids -1": ids.format(-1, 2),
        "token_ids 12": ids.format(0, 12),
        "token_ids 11": "ok",
        "token_ids length 7": "[`inputs` must have shape (batch, 5); got shape] [1 7]",
    }
    assert out.keys() == expected.keys()
    for name, message in expected.items():
        assert out[name] == message or out[name].endswith("assertion failed: " + message), (
            name, out[name])


@pytest.mark.slow
def test_export_leaves_what_was_there_or_the_export_and_nothing_else(tmp_path):

    import al_keras

    model = al_keras.models.get("mlp", input_shape=(6,), num_classes=3, hidden_units=4,
                                label_units=4)
    target = tmp_path / "export"
    target.write_text("a file")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.export(target)
    assert target.read_text() == "a file"
    # Tracing fails half way: the file stays, nothing else appears.
    model.call = lambda *a, **k: 1 / 0
    with pytest.raises(ZeroDivisionError):
        model.export(target, overwrite=True)
    assert target.read_text() == "a file" and os.listdir(tmp_path) == ["export"]
    del model.call
    model.export(target, overwrite=True)  # A file replaced by the export.
    assert (target / "saved_model.pb").exists() and os.listdir(tmp_path) == ["export"]
    model.export(target, overwrite=True)  # An export replaced.
    assert (target / "saved_model.pb").exists() and os.listdir(tmp_path) == ["export"]
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        model.export(target / "saved_model.pb" / "inner")
    assert os.listdir(tmp_path) == ["export"]


if __name__ == "__main__":
    import without_al_keras  # noqa: F401  (first: al_keras unimportable)

    serve(*sys.argv[1:3])
