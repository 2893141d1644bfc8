"""Serves an export's adaptive signatures without al_keras; used by
test_early_exit.py.

Usage: python serve_adaptive.py EXPORT_DIR INPUTS.npy OUTPUT.npz

al_keras is made unimportable first.  The export's blocks count the
examples they see in variables named `.../calls`.  Writes `batch/*`: the
`adaptive` signature on the whole batch; `one_by_one/*`: on each example
alone, with `block_calls`, how many examples each block ran for; and
`confident/block_calls`: the same for `adaptive_threshold` at threshold 0.
"""

import sys

import without_al_keras  # noqa: F401  # isort: skip (first: al_keras unimportable)

import numpy as np
import tensorflow as tf


def main(export_dir, inputs_path, output_path):
    x = np.load(inputs_path)
    loaded = tf.saved_model.load(export_dir)
    counters = sorted((v for v in loaded.variables if v.name.endswith("/calls:0")),
                      key=lambda v: v.name)

    def counts():
        return np.array([float(v.numpy()) for v in counters])

    results = {}
    out = loaded.signatures["adaptive"](inputs=tf.constant(x))
    results["batch/probabilities"] = out["probabilities"].numpy()
    results["batch/exit"] = out["exit"].numpy()
    start = counts()
    alone = [loaded.signatures["adaptive"](inputs=tf.constant(x[i:i + 1]))
             for i in range(len(x))]
    results["one_by_one/block_calls"] = counts() - start
    results["one_by_one/probabilities"] = np.concatenate(
        [o["probabilities"].numpy() for o in alone])
    results["one_by_one/exit"] = np.concatenate([o["exit"].numpy() for o in alone])
    start = counts()
    for i in range(len(x)):
        loaded.signatures["adaptive_threshold"](inputs=tf.constant(x[i:i + 1]),
                                                threshold=tf.constant(0.0))
    results["confident/block_calls"] = counts() - start
    assert "al_keras" not in sys.modules
    np.savez(output_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:4])
