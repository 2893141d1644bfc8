"""TFDS builders for datasets that come as local files, not downloads.

* `IdxImages` prepares an MNIST-format idx folder (MNIST, Fashion-MNIST, e.g.
  Debian's `dataset-fashion-mnist` in /usr/share/datasets/fashion-mnist).
* `WordnetNounSupersenses` prepares WordNet's `data.noun` (Debian's
  `wordnet-base`) as text classification by noun supersense.
* `TinyImagenet` prepares Tiny-ImageNet-200 from the official
  `tiny-imagenet-200.zip` or its extracted folder.

Both take a `SourceConfig` whose name is keyed on the source's path, file
sizes and modification times, so two sources never share prepared data. The
builders are not registered with TFDS (`tfds.builder("idx_images")` does not
exist); `al_keras.data.datasets.load` constructs them.
"""

from al_keras.data.tfds_builders.idx_images import IdxImages, find_idx_files, read_idx
from al_keras.data.tfds_builders.source_config import SourceConfig
from al_keras.data.tfds_builders.tiny_imagenet import TinyImagenet, find_tiny_imagenet
from al_keras.data.tfds_builders.wordnet_nouns import WordnetNounSupersenses

__all__ = [
    "IdxImages",
    "SourceConfig",
    "TinyImagenet",
    "WordnetNounSupersenses",
    "find_idx_files",
    "find_tiny_imagenet",
    "read_idx",
]
