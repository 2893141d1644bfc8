"""Makes al_keras unimportable in this process; imported first by the serving
scripts, to show that an export needs only TensorFlow."""

import importlib.abc
import sys


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "al_keras" or name.startswith("al_keras."):
            raise ImportError(f"{name} must not be needed to serve the export")
        return None


sys.meta_path.insert(0, _Block())
