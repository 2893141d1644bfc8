"""Train and evaluate an AL model or its BP twin from a config file.

    python train.py                                   # embedded digits, offline
    python train.py --config=configs/fashion_mnist.py:model=cnn,method=al \\
        --config.data_dir=/usr/share/datasets/fashion-mnist --workdir=/tmp/fm_cnn_al
    python train.py --config.distribute=blocks      # blocks on 2 devices, pipelined
    python train.py --config=configs/cifar10.py:model=vgg,smoke --config.lr=3e-4
    KERAS_BACKEND=jax python train.py               # on JAX (or --backend=jax)

Hyperparameters are config keys (`--config.KEY=VALUE`); see configs/ and
docs/training.md.  Rerunning a command with the same workdir resumes it.
Keras' backend is `--backend`, else `KERAS_BACKEND`, else Keras' own
default (`~/.keras/keras.json`, or tensorflow); without TensorFlow
installed, the digits and MNIST-format idx folders train on JAX.
"""

import importlib.util
import json
import os
import re
import sys

BACKENDS = ("jax", "tensorflow")  # Keras backends al_keras trains on.
_LIBRARY = {"jax": "JAX", "tensorflow": "TensorFlow"}
_INSTALL = {"jax": "pip install jax",
            "tensorflow": "pip install tensorflow (or al_keras[tensorflow])"}


def choose_backend(argv):
    """Sets `KERAS_BACKEND` from `--backend=NAME` (or `--backend NAME`) in
    `argv`, before Keras is imported; exits with one line for an unknown
    backend, or one whose library is not installed.

    Returns:
        The backend's name, `--backend`'s, else `KERAS_BACKEND`'s, else
        Keras' configured default (`$KERAS_HOME/keras.json` or
        `~/.keras/keras.json`; tensorflow without one).
    """
    name, source = None, None
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        if arg.startswith("--backend="):
            name, source = arg[len("--backend="):], arg
        elif arg == "--backend":
            if i + 1 >= len(argv):
                sys.exit("train.py: --backend needs a value: --backend=jax or "
                         "--backend=tensorflow.")
            name, source = argv[i + 1], f"--backend {argv[i + 1]}"
    if name is not None:
        if name not in BACKENDS:
            sys.exit(f"train.py: {source}: unknown backend {name!r}; choose one of "
                     f"{', '.join(BACKENDS)}.")
        os.environ["KERAS_BACKEND"] = name
    elif os.environ.get("KERAS_BACKEND"):
        name, source = os.environ["KERAS_BACKEND"], f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}"
        if name not in BACKENDS:
            sys.exit(f"train.py: {source}: al_keras trains on Keras' "
                     f"{' or '.join(BACKENDS)} backend, not {name!r}; set "
                     "KERAS_BACKEND (or --backend) to one of them.")
    else:
        name, source = _configured_backend(), None
        if name not in BACKENDS:
            sys.exit(f"train.py: Keras is configured for the {name!r} backend "
                     f"(keras.json); al_keras trains on {' or '.join(BACKENDS)}: choose "
                     "one with --backend=jax or --backend=tensorflow.")
    if not _installed(name):
        other = [b for b in BACKENDS if b != name and _installed(b)]
        instead = (f"; or train on {_LIBRARY[other[0]]} with --backend={other[0]} (or "
                   f"KERAS_BACKEND={other[0]})" if other else "")
        what = (f"Keras' default backend, {name}," if source is None
                else f"{source}: Keras' {name} backend")
        sys.exit(f"train.py: {what} needs {_LIBRARY[name]}, which is not installed: "
                 f"{_INSTALL[name]}{instead}.")
    if name == "jax" and "--config.distribute=blocks" in argv:
        split_host_cpu()
    return name


def split_host_cpu():
    """JAX sees one CPU device a core (as `distribute.split_cpu` splits
    TensorFlow's), set before JAX starts, unless `XLA_FLAGS` says already."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={os.cpu_count() or 1}").strip()


def _configured_backend():
    """The backend of Keras' config file, as Keras reads it (tensorflow without one)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # An import blocker, a broken module.
        return False


if __name__ == "__main__":
    # Before anything imports Keras, which reads KERAS_BACKEND once.
    choose_backend(sys.argv)

from absl import app, flags, logging  # noqa: E402 (after the backend is chosen)
from ml_collections import config_flags  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEFAULT_CONFIG = os.path.join(_HERE, "configs", "digits.py")


def check_arguments(argv):
    """Exits with one clear line for a bad `--config` file or argument, or a
    `--config.KEY=VALUE` override of an unknown key or of a value of the
    wrong type (ml_collections would answer a traceback or a usage dump)."""
    from al_keras import models
    from al_keras.training import config_lib

    config = None  # The config the overrides apply to.
    for arg in argv[1:]:
        match = re.fullmatch(r"--config=([^:]*)(?::(.*))?", arg)
        if match:
            path, config_arg = match.groups()
            if not os.path.isfile(path):
                sys.exit(f"train.py: {arg}: no config file {path!r}.")
            try:
                config = config_lib.load_config_module(path).get_config(config_arg)
            except Exception as e:  # Reported, not swallowed: we exit on it.
                sys.exit(f"train.py: {arg}: {e}")
    options = models.all_option_names()
    for arg in argv[1:]:
        match = re.fullmatch(r"--config\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?(?:=(.*))?",
                             arg)
        if not match:
            continue
        key, option, value = match.groups()
        if key not in config_lib.SCHEMA:
            sys.exit(f"train.py: unknown config key {key!r} in {arg!r}; known keys: "
                     f"{', '.join(sorted(config_lib.SCHEMA))}.")
        if key == "model_options" and option not in options:
            sys.exit(f"train.py: unknown model option {option!r} in {arg!r}; model "
                     f"options: {', '.join(sorted(options))}.")
        if value is None:
            continue
        kind, meaning = config_lib.SCHEMA[key]
        if key == "model_options":
            if config is None:
                config = config_lib.load_config_module(_DEFAULT_CONFIG).get_config()
            default = config.model_options.get(option)
            if not isinstance(default, (bool, int, float)):
                continue  # Strings, tuples and unset options: ml_collections parses.
            kind, key = type(default), f"model_options.{option}"
            meaning = f"default {default!r}"
        if not _parses_as(kind, value):
            sys.exit(f"train.py: {arg}: config.{key} must be {kind.__name__} "
                     f"({meaning}), got {value!r}.")


def _parses_as(kind, text):
    if kind is bool:
        return text.lower() in ("true", "false", "1", "0")
    try:
        kind(text)
    except ValueError:
        return False
    return True


if __name__ == "__main__":
    # Before the flags are defined: config_flags applies overrides right then.
    check_arguments(sys.argv)

_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG,
    "A config file, optionally with an argument: configs/x.py:model=cnn,method=bp.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder (default: "
    "/tmp/al_keras_runs/<dataset>_<model>_<method>[_<distribute>]).")
flags.DEFINE_enum(
    "backend", None, BACKENDS, "Keras' backend (default: $KERAS_BACKEND, else Keras' "
    "configured one): set before Keras is imported. Without TensorFlow, jax trains the "
    "digits and MNIST-format idx folders.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines are noise here.
    from al_keras.training import runs, train_lib

    config = _CONFIG.value
    workdir = _WORKDIR.value or runs.default_workdir(config)
    print(f"workdir: {workdir}")
    try:
        results = train_lib.train_and_evaluate(config, workdir)
    except train_lib.USER_ERRORS as e:  # Said in one line; nothing is lost.
        sys.exit(f"train.py: {e}")
    except KeyboardInterrupt:
        finished = train_lib.finished_epochs(workdir)
        print(f"\ntrain.py: interrupted with {finished} epoch(s) saved in {workdir}; "
              "rerun the same command to continue.", file=sys.stderr)
        sys.exit(130)
    print(train_lib.summarize(results))


if __name__ == "__main__":
    app.run(main)
