"""The core of AL: its layers, `ALModel` and its backprop twin `BPModel`.

* `layers.py` -- g (`LabelEncoder`), b (`Bridge`), h (`LabelDecoder`),
  `FeaturePooling`; `block.py` -- `AssociatedBlock`, one block's f, g, b, h.
* `al_model.py` -- `ALModel`: construction, compile, the block optimizers;
  `local_training.py` -- its training step (one tape per local loss);
  `exits.py` -- inference, exits, export; `keras_compat.py` -- Keras and
  tf.distribute workarounds.
* `bp_model.py` -- `BPModel`, trained end to end.
* `labels.py` (one-hot targets, `ClassificationCrossentropy`),
  `optimizers.py` (the block optimizers), `schedules.py` (learning-rate
  schedules), `input_checks.py` (the data checks of fit / evaluate /
  predict), `nonfinite.py` (`on_nonfinite_loss`), `export.py` (SavedModel).
"""
