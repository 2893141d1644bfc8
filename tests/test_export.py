"""SavedModel export: served in a fresh process without al_keras, and TFLite."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import al_keras

HERE = os.path.dirname(os.path.abspath(__file__))


def _serve(export_dir, x, tmp_path, threshold=0.5):
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "serve_exported.py"),
         str(export_dir), str(tmp_path / "x.npy"), str(tmp_path / "out.npz"),
         repr(threshold)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(tmp_path / "out.npz"))


@pytest.mark.slow
@pytest.mark.parametrize("name, input_shape, options", [
    ("mlp", (64,), {"hidden_units": 32, "label_units": 16, "num_blocks": 3}),
    ("cnn", (8, 8, 1), {"filters": (4, 4, 8, 8), "label_units": 8}),
])
def test_al_export_serves_every_exit_without_al_keras(
    name, input_shape, options, digits, tmp_path
):
    (x, y), (x_test, _) = digits
    x = x.reshape((-1,) + input_shape)
    x_test = x_test[:32].reshape((-1,) + input_shape)
    model = al_keras.models.get(name, input_shape=input_shape, num_classes=10,
                                **options)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x[:128], y[:128], epochs=1, verbose=0)
    # Thresholds that send some examples out at exit 1 and not others.
    first = model.predict(x_test, exit=1, verbose=0).max(-1)
    default, given = (float(np.quantile(first, q)) for q in (0.7, 0.4))
    model.exit_threshold = default  # As calibrate() would: the `adaptive` default.
    model.export(tmp_path / "export")

    out = _serve(tmp_path / "export", x_test, tmp_path, threshold=given)
    exits = [f"exit_{i}" for i in range(1, model.num_blocks + 1)]
    assert sorted({k.split("/")[1] for k in out if k.startswith("saved/")}) == sorted(
        ["adaptive", "adaptive_threshold", "serve", "serving_default"] + exits
    )
    # The adaptive signatures: at the model's threshold, and at the one given
    # to serve_exported.py, as predict(exit="adaptive"); TFLite too.
    for key, threshold in (("adaptive", None), ("adaptive_threshold", given)):
        expected = model.predict(x_test, exit="adaptive", threshold=threshold, verbose=0)
        assert len(set(expected["exit"])) > 1  # Examples leave at different exits.
        for kind, atol in (("saved", 1e-5), ("tflite", 1e-4)):
            np.testing.assert_allclose(out[f"{kind}/{key}"], expected["probabilities"],
                                       atol=atol)
            np.testing.assert_array_equal(out[f"{kind}/{key}/exit"], expected["exit"])
    full = model.predict(x_test, verbose=0)
    np.testing.assert_allclose(out["saved/serving_default"], full, atol=1e-5)
    np.testing.assert_allclose(out["tflite/serving_default"], full, atol=1e-4)
    for i, key in enumerate(exits, start=1):
        expected = model.predict(x_test, exit=i, verbose=0)
        np.testing.assert_allclose(out[f"saved/{key}"], expected, atol=1e-5)
        np.testing.assert_allclose(out[f"tflite/{key}"], expected, atol=1e-4)
    # The exits really are different paths.
    assert np.abs(out["saved/exit_1"] - full).max() > 1e-4


@pytest.mark.slow
def test_bp_export_serves_without_al_keras(digits, tmp_path):
    (x, y), (x_test, _) = digits
    model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                method="bp", hidden_units=32, label_units=16)
    model.compile(optimizer="adam")
    model.fit(x[:128], y[:128], epochs=1, verbose=0)
    model.export(tmp_path / "export")
    out = _serve(tmp_path / "export", x_test[:16], tmp_path)
    np.testing.assert_allclose(out["saved/serving_default"],
                               model.predict(x_test[:16], verbose=0), atol=1e-5)
    np.testing.assert_allclose(out["tflite/serving_default"],
                               model.predict(x_test[:16], verbose=0), atol=1e-4)


def test_export_refuses_to_overwrite_unless_asked(tmp_path):
    model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                hidden_units=8, label_units=4)
    target = tmp_path / "export"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.export(target)
    assert (target / "keep.txt").read_text() == "user data"
    model.export(target, overwrite=True)
    assert (target / "saved_model.pb").exists()
