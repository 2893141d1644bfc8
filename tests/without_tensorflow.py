"""Makes TensorFlow unimportable in this process, as on a machine with
Keras and JAX only; imported first by scripts that show al_keras needs no
TensorFlow on the JAX backend (tests/test_backends.py)."""

import importlib.abc
import os
import sys


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets", "tf_keras"):
            raise ImportError(f"No module named {name!r} (blocked: a machine without "
                              "TensorFlow)")
        return None


sys.meta_path.insert(0, _Block())
os.environ["KERAS_BACKEND"] = "jax"
