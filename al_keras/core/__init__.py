"""The core of AL: its layers, `ALModel` and its backprop twin `BPModel`.

* `layers.py` -- g (`LabelEncoder`), b (`Bridge`), h (`LabelDecoder`),
  `FeaturePooling`; `block.py` -- `AssociatedBlock`, one block's f, g, b, h.
* `al_model.py` -- `ALModel`: construction, compile, the block optimizers;
  `step.py` -- the block step (the paper's math, `keras.ops`);
  `trainers/` -- its training step per backend (TensorFlow tapes, JAX
  `value_and_grad`); `executor.py` -- the seam to `distribute`;
  `exits.py` -- inference, exits, export; `keras_compat.py` -- Keras and
  tf.distribute workarounds.
* `bp_model.py` -- `BPModel`, trained end to end.
* `labels.py` (one-hot targets, `ClassificationCrossentropy`),
  `optimizers.py` (the block optimizers), `schedules.py` (learning-rate
  schedules), `input_checks.py` (the data checks of fit / evaluate /
  predict), `nonfinite.py` (`on_nonfinite_loss`), `export.py` (SavedModel).
"""
