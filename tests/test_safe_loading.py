"""Every zoo model, AL and BP, loads with `safe_mode=True` and serves without al_keras.

A small version of each model is fitted one step and written as `.keras`
and as a SavedModel.  One fresh process loads all the `.keras` files with
`keras.models.load_model(path, safe_mode=True)`; another, with al_keras
blocked, serves all the SavedModels.  The `.keras` configs are also read
directly: no Lambda layer, pickled lambda or Python function is in them.
"""

import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import al_keras
from load_keras_safely import optimizers, probabilities

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_CLASSES = 3
BATCH = 4

# name -> (input shape, small options); config_lib.smoke's widths or smaller.
# The ResNets at depth 8 (one unit per stage) still have every layer class
# and both shortcuts (identity and projection) of depths 20 and 32, in a
# fraction of the tracing time.
SMALL_MODELS = {
    "mlp": ((8, 8, 1), {"hidden_units": 16}),
    "cnn": ((8, 8, 1), {"filters": (4, 4, 8, 8)}),
    "vgg": ((16, 16, 1), {"dense_units": 16}),  # vgg needs 16x16 at least.
    "resnet20": ((8, 8, 1), {"depth": 8}),
    "resnet32": ((8, 8, 1), {"depth": 8}),
    "lstm": ((6,), {"vocab_size": 20, "embedding_dim": 8, "lstm_units": 4,
                    "num_layers": 1}),
    "transformer": ((6,), {"vocab_size": 20, "embedding_dim": 8, "num_heads": 2,
                           "intermediate_dim": 8, "num_layers": 1}),
}
RUNS = [(name, method) for name in al_keras.models.names() for method in ("al", "bp")]


class _Script:
    """A helper script of tests/ run in a fresh process, in the background."""

    def __init__(self, script, manifest, work_dir):
        self.script = script
        self.output = os.path.join(work_dir, f"{script}.npz")
        self.log = os.path.join(work_dir, f"{script}.log")
        manifest_path = os.path.join(work_dir, f"{script}.json")
        with open(manifest_path, "w") as f:
            json.dump(manifest, f)
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, os.path.join(HERE, script), manifest_path,
                 self.output],
                stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            )

    def result(self):
        """Waits for the script; returns its OUTPUT.npz as a dict."""
        returncode = self.process.wait(timeout=300)
        with open(self.log) as log:
            assert returncode == 0, f"{self.script} failed:\n{log.read()[-3000:]}"
        return dict(np.load(self.output))

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _fit_and_save(name, method, work_dir, rng):
    """Builds a small model, fits it one step, saves it; returns (model, run)."""
    key = f"{name}-{method}"
    input_shape, options = SMALL_MODELS[name]
    model = al_keras.models.get(
        name, input_shape=input_shape, num_classes=NUM_CLASSES, method=method,
        label_units=4, bridge_multiplier=0, **options,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    # One eager step: the optimizer state exists without tracing a step
    # (run_eagerly set after compile is not part of the saved config).
    model.run_eagerly = True
    x = rng.random((BATCH,) + input_shape).astype("float32")
    if "vocab_size" in options:  # A text model: token ids, some padding.
        x = rng.integers(0, options["vocab_size"], (BATCH,) + input_shape).astype("int32")
    y = rng.integers(0, NUM_CLASSES, BATCH)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    run = {
        "class": type(model).__name__,
        "keras": str(work_dir / f"{key}.keras"),
        "export": str(work_dir / f"{key}_export"),
        "inputs": str(work_dir / f"{key}_x.npy"),
        "probabilities": probabilities(model, x),
        "iterations": [int(o.iterations) for o in optimizers(model)],
    }
    np.save(run["inputs"], x)
    model.save(run["keras"])
    return model, run


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Saves and exports every run, starting each helper once its files exist.

    Yields `(runs, loader, server)`: runs maps `"<name>-<method>"` to the
    run's files, inputs, expected probabilities and optimizer step counts;
    loader and server are the running load_keras_safely.py and
    serve_exports.py.  The loader works while the models are exported here.
    """
    work_dir = tmp_path_factory.mktemp("safe_loading")
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    runs, models, scripts = {}, {}, []
    try:
        for name, method in RUNS:
            key = f"{name}-{method}"
            models[key], runs[key] = _fit_and_save(name, method, work_dir, rng)
        scripts.append(_Script(
            "load_keras_safely.py",
            {k: {"path": r["keras"], "inputs": r["inputs"]} for k, r in runs.items()},
            work_dir,
        ))
        for key in list(models):
            models.pop(key).export(runs[key]["export"])
        keras.backend.clear_session()
        scripts.append(_Script(
            "serve_exports.py",
            {k: {"export_dir": r["export"], "inputs": r["inputs"]}
             for k, r in runs.items()},
            work_dir,
        ))
        yield runs, *scripts
    finally:
        for script in scripts:
            script.stop()


@pytest.fixture(scope="module")
def saved_runs(saved):
    return saved[0]


@pytest.fixture(scope="module")
def safely_loaded(saved):
    """load_keras_safely.py's outputs for every run, from one fresh process."""
    return saved[1].result()


@pytest.fixture(scope="module")
def served(saved):
    """serve_exports.py's outputs for every export, al_keras unimportable."""
    return saved[2].result()


def python_code_in(config):
    """What in a `.keras` config.json is Python code rather than Keras objects.

    Returns descriptions of every Lambda layer, serialized lambda
    (`"__lambda__"`, its bytecode) and function reference
    (`"class_name": "function"`).  Function references are all reported:
    Keras writes an unregistered user function as module `"builtins"`, like
    its own losses, so the two cannot be told apart here; the zoo models
    use strings and registered classes instead.
    """
    found = []
    if isinstance(config, dict):
        class_name = config.get("class_name")
        if class_name == "Lambda":
            found.append(f"Lambda layer {config.get('config', {}).get('name')!r}")
        elif class_name == "__lambda__":
            found.append("serialized lambda")
        elif class_name == "function":
            found.append(f"function {config.get('module')}.{config.get('config')}")
        values = config.values()
    elif isinstance(config, list):
        values = config
    else:
        values = []
    for value in values:
        found += python_code_in(value)
    return found


def _config_json(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def double(x):
    return x * 2.0


def test_python_code_check_flags_lambdas_and_functions(tmp_path):
    lambda_model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2.0, name="twice")]
    )
    lambda_model.save(tmp_path / "lambda.keras")
    assert python_code_in(_config_json(tmp_path / "lambda.keras")) == [
        "Lambda layer 'twice'", "serialized lambda"
    ]
    with pytest.raises(ValueError, match="lambda"):
        keras.models.load_model(tmp_path / "lambda.keras", safe_mode=True)

    function_model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(2, activation=double)]
    )
    function_model.save(tmp_path / "function.keras")
    assert python_code_in(_config_json(tmp_path / "function.keras")) == [
        "function builtins.double"
    ]
    with pytest.raises(TypeError, match="double"):
        keras.models.load_model(tmp_path / "function.keras", safe_mode=True)


# One test per check, each over every model: a test's teardown (conftest's
# clear_session) costs a garbage collection, ~0.3 s here.


@pytest.mark.slow
def test_keras_configs_have_no_python_code(saved_runs):
    configs = {key: _config_json(run["keras"]) for key, run in saved_runs.items()}
    assert {k: c["module"].split(".")[0] for k, c in configs.items()} == {
        k: "al_keras" for k in saved_runs
    }
    assert {k: python_code_in(c) for k, c in configs.items()} == {
        k: [] for k in saved_runs
    }


@pytest.mark.slow
def test_safe_mode_load_restores_predictions_and_steps(saved_runs, safely_loaded):
    errors = {k: str(v) for k, v in safely_loaded.items() if k.endswith("/error")}
    assert errors == {}
    for key, run in saved_runs.items():
        assert str(safely_loaded[f"{key}/class"]) == run["class"], key
        for path, expected in run["probabilities"].items():
            np.testing.assert_allclose(safely_loaded[f"{key}/{path}"], expected,
                                       atol=1e-5, err_msg=f"{key} {path}")
        # Every optimizer (AL: the model's, then one per block and loss
        # family) took the one step, and its count came back.
        assert set(run["iterations"]) == {1}, key
        assert safely_loaded[f"{key}/iterations"].tolist() == run["iterations"], key


@pytest.mark.slow
def test_exports_serve_every_path_without_al_keras(saved_runs, served):
    exits = {key: [p for p in run["probabilities"] if p != "full"]
             for key, run in saved_runs.items()}
    expected_signatures = {  # AL models also serve the adaptive path.
        key: sorted(["serve", "serving_default"] + names
                    + (["adaptive", "adaptive_threshold"] if names else []))
        for key, names in exits.items()
    }
    assert {k: sorted(v) for k, v in _by_run(served).items()} == expected_signatures
    for key, signatures in _by_run(served).items():
        probabilities = saved_runs[key]["probabilities"]
        for name, output in signatures.items():
            if name == "adaptive_threshold":  # At 0.5: each row is one exit's.
                candidates = np.stack([probabilities[e] for e in exits[key]], axis=1)
                assert np.abs(candidates - output[:, None]).max(-1).min(-1).max() < 1e-5
                continue
            expected = probabilities["full" if name.startswith(("serv", "adaptive"))
                                     else name]  # Uncalibrated adaptive: the full path.
            np.testing.assert_allclose(output, expected, atol=1e-5,
                                       err_msg=f"{key} {name}")


def _by_run(outputs):
    """`{"<run>/<name>": v}` -> `{run: {name: v}}`."""
    runs = {}
    for path, value in outputs.items():
        key, name = path.split("/", 1)
        runs.setdefault(key, {})[name] = value
    return runs
