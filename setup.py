"""Packaging for al_keras: Associated Learning for Keras 3, on TensorFlow or JAX.

The lower bounds are the versions the test suite ran on (docs/backends.md);
al_keras' reach into Keras internals is listed in
al_keras/core/keras_compat.py and checked by tests/test_compatibility.py.
"""

import pathlib
import re

import setuptools

_HERE = pathlib.Path(__file__).parent
_VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (_HERE / "al_keras" / "__init__.py").read_text(),
    re.M,
).group(1)

_TENSORFLOW = ("tensorflow>=2.21", "tensorflow-datasets>=4.9.10", "tensorboard")

setuptools.setup(
    name="al_keras",
    version=_VERSION,
    description=(
        "Associated Learning (Kao & Chen, 2021): train deep networks "
        "without end-to-end backpropagation, in Keras 3 on TensorFlow or JAX."
    ),
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["al_keras", "al_keras.*"]),
    python_requires=">=3.10",
    # A backend comes with an extra: al_keras[tensorflow] or al_keras[jax].
    install_requires=[
        "keras>=3.15.1",
        "importlib_resources",
        "absl-py",
        "ml-collections",
        "numpy",
        "scikit-learn",
        "matplotlib",
    ],
    extras_require={
        # TensorFlow: tf.data / TFDS loaders, TextVectorization (the text
        # configs), SavedModel export, tf.distribute, BlockParallel.
        "tensorflow": [*_TENSORFLOW],
        # JAX: trains, evaluates, saves every model; no TensorFlow needed.
        "jax": ["jax[cpu]>=0.10.2"],
        # Ray as measured (docs/several-devices.md); pinned like ruff, whose
        # lint CI runs must not change under a release.
        "ray": ["ray==2.60.0"],
        # examples/tuner_search.py: a KerasTuner search over AL's settings.
        "tuner": ["keras-tuner==1.4.8"],
        "test": [*_TENSORFLOW, "jax[cpu]>=0.10.2", "pytest>=7", "ruff==0.17.6",
                 "ray==2.60.0", "keras-tuner==1.4.8"],
    },
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
