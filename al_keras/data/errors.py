"""What loading data can fail with, in words a user can act on.

All are errors in what the user gave or installed (not in al_keras):
`train.py` prints their message as one line.
"""

import functools
import importlib


class DatasetUnavailableError(RuntimeError):
    """The data is neither on disk nor downloadable; the message says how to get it."""


class DataFileError(ValueError):
    """A data folder or file that is missing, truncated or malformed; the
    message names the path and what is wrong with it."""


# How to get what a TensorFlow-only part needs (`TensorFlowRequiredError`).
INSTALL_TENSORFLOW = "pip install tensorflow (or al_keras[tensorflow])"
INSTALL_TFDS = "pip install tensorflow tensorflow-datasets (or al_keras[tensorflow])"


class TensorFlowRequiredError(ImportError):
    """A part of al_keras that needs TensorFlow, asked for where it is not
    installed (al_keras itself runs on Keras' JAX backend without it); the
    message is one line naming the part and how to install what it needs."""


def tensorflow_required(what, install=INSTALL_TENSORFLOW):
    """The `TensorFlowRequiredError` saying that `what` needs TensorFlow."""
    return TensorFlowRequiredError(f"{what} needs TensorFlow, which is not installed: "
                                   f"{install}.")


@functools.cache
def tensorflow_available():
    """Whether `import tensorflow` works in this process (imported once, cached;
    a TensorFlow whose import fails counts as absent)."""
    try:
        importlib.import_module("tensorflow")
    except ImportError:
        return False
    return True


def import_tensorflow(what, install=INSTALL_TENSORFLOW):
    """The `tensorflow` module, or the `TensorFlowRequiredError` naming `what`."""
    if not tensorflow_available():
        raise tensorflow_required(what, install)
    return importlib.import_module("tensorflow")
