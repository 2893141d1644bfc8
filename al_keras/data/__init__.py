"""Data: the embedded digits, and the datasets of the configs.

* `load_digits` (`digits.py`) -- scikit-learn's 8x8 digits, offline.
* `datasets.load(name, ...)` (`datasets.py`) -- the tf.data pipelines of
  every config's dataset (digits, MNIST-format idx folders, CIFAR through
  TFDS, Tiny-ImageNet), with their augmentation (`augmentation.py`).
* `arrays.py` -- the same for the digits and idx folders as NumPy batches
  (`keras.utils.PyDataset`), where TensorFlow is not installed;
  `idx_files.py` reads MNIST-format idx files;
* `tfds_builders` -- TFDS builders for datasets that come as local files.

Without TensorFlow, what needs it raises `errors.TensorFlowRequiredError`
(an ImportError) in one line naming it and how to install it.
"""

from al_keras.data.digits import load_digits

__all__ = ["load_digits"]
