"""Writes the `.keras` files of tests/test_legacy_files.py; kept for the record.

Run once, at commit 0f1587d (al_keras 0.1.0, the flat module layout), as
`python tests/data/keras_v0_1/make_files.py`: four small models that together
hold every class al_keras registers for serialization (ALModel, BPModel,
AssociatedBlock, LabelEncoder, LabelDecoder, Bridge, FeaturePooling,
ResidualUnit, ClassificationCrossentropy, ScaledSchedule, OriginalSchedule),
each trained 3 steps so that every optimizer has state, saved next to
`inputs.npy` and `expected.npz` (the saved model's probabilities on every
inference path and every optimizer's step count, in the keys that
tests/load_keras_safely.py reports).
Rerunning it on later code writes files of that code, not of 0.1.0.
"""

import pathlib
import sys

import keras
import numpy as np

import al_keras
from al_keras.schedules import OriginalSchedule

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))
from load_keras_safely import optimizers, probabilities  # noqa: E402


def _models():
    tiny = dict(input_shape=(8, 8, 1), num_classes=10)
    yield "al_mlp_schedule", al_keras.models.get(
        "mlp", method="al", hidden_units=16, label_units=8, **tiny)
    yield "al_cnn_light", al_keras.models.get(
        "cnn", method="al", filters=(4, 4, 4, 4), label_units=8,
        bridge_pool_size=2, **tiny)
    yield "al_residual", al_keras.associate(
        [keras.Sequential([keras.layers.Conv2D(4, 3, padding="same"),
                           al_keras.ResidualUnit(4)]),
         keras.Sequential([al_keras.ResidualUnit(6, strides=2)])],
        num_classes=10, label_units=8, input_shape=(8, 8, 1),
        output_loss="categorical_crossentropy", bridge_pool_size=2)
    yield "bp_cnn_light", al_keras.models.get(
        "cnn", method="bp", filters=(4, 4, 4, 4), label_units=8,
        bridge_pool_size=2, **tiny)


def main():
    keras.utils.set_random_seed(0)
    (x, y), _ = al_keras.data.load_digits()
    x, y = x[:96].reshape(-1, 8, 8, 1), y[:96]
    np.save(HERE / "inputs.npy", x[:16])
    expected = {}
    for key, model in _models():
        lr = OriginalSchedule(1e-3, total_steps=10) if "schedule" in key else 1e-3
        model.compile(optimizer=keras.optimizers.Adam(lr), metrics=["accuracy"])
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        model.save(HERE / f"{key}.keras")
        expected[f"{key}/class"] = np.array(type(model).__name__)
        expected[f"{key}/iterations"] = np.array(
            [int(o.iterations) for o in optimizers(model)])
        for name, value in probabilities(model, x[:16]).items():
            expected[f"{key}/{name}"] = value
    np.savez(HERE / "expected.npz", **expected)


if __name__ == "__main__":
    main()
