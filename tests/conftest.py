"""Shared fixtures: the embedded digits data, and a quiet, seeded Keras."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest

import al_keras


@pytest.fixture(scope="session")
def digits():
    """((x_train, y_train), (x_test, y_test)), vectors of 64 features."""
    return al_keras.data.load_digits()


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()
