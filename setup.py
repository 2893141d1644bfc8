"""Packaging for al_keras: Associated Learning for Keras 3 / TensorFlow."""

import pathlib
import re

import setuptools

_HERE = pathlib.Path(__file__).parent
_VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (_HERE / "al_keras" / "__init__.py").read_text(),
    re.M,
).group(1)

setuptools.setup(
    name="al_keras",
    version=_VERSION,
    description=(
        "Associated Learning (Kao & Chen, 2021): train deep networks "
        "without end-to-end backpropagation, in Keras 3 / TensorFlow."
    ),
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["al_keras", "al_keras.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.3",
        "tensorflow-datasets>=4.9",
        "importlib_resources",
        "absl-py",
        "ml-collections",
        "numpy",
        "scikit-learn",
        "matplotlib",
        "tensorboard",
    ],
    extras_require={
        # Ray as measured (docs/several-devices.md); pinned like ruff, whose
        # lint CI runs must not change under a release.
        "ray": ["ray==2.60.0"],
        # examples/tuner_search.py: a KerasTuner search over AL's settings.
        "tuner": ["keras-tuner==1.4.8"],
        "test": ["pytest>=7", "ruff==0.17.6", "ray==2.60.0", "keras-tuner==1.4.8"],
    },
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
