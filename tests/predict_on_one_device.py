"""Loads a `.keras` model in a fresh process with one CPU device and predicts.

Usage: python predict_on_one_device.py MODEL.keras INPUTS.npy OUTPUT.npz
Used by test_distribute.py: a model saved from a placed (BlockParallel)
model must load where there is a single device.  Writes the predictions
and the devices of the loaded variables.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import al_keras  # noqa: E402, F401  (registers the serializable classes)


def main(model_path, inputs_path, output_path):
    model = keras.saving.load_model(model_path)
    x = np.load(inputs_path)
    devices = sorted({v.value.device for v in model.variables})
    np.savez(output_path, predictions=model.predict(x, verbose=0),
             devices=np.array(devices),
             num_cpu_devices=len(tf.config.list_logical_devices("CPU")))


if __name__ == "__main__":
    main(*sys.argv[1:])
