"""Train and evaluate an AL model or its BP twin from a config file.

    python train.py                                   # embedded digits, offline
    python train.py --config=configs/fashion_mnist.py:model=cnn,method=al \\
        --config.data_dir=/usr/share/datasets/fashion-mnist --workdir=/tmp/fm_cnn_al
    python train.py --config.distribute=blocks      # blocks on 2 devices, pipelined
    python train.py --config=configs/cifar10.py:model=vgg,smoke --config.lr=3e-4

Hyperparameters are config keys (`--config.KEY=VALUE`); see configs/ and
docs/training.md.  Rerunning a command with the same workdir resumes it.
"""

import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

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
