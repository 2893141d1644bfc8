"""MNIST-format idx files (MNIST, Fashion-MNIST): finding and parsing them.

NumPy only: the TFDS builder of an idx folder
(`al_keras.data.tfds_builders.IdxImages`) and the arrays of `datasets.load`
without TensorFlow both read the files here.
"""

import gzip
import os
import zlib

import numpy as np

from al_keras.data.errors import DataFileError

# The four files of an MNIST-format folder, by split and part; each may be
# gzipped (".gz") and some distributions write "train-images.idx3-ubyte".
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# idx type byte -> numpy dtype (big-endian for multi-byte types).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def find_idx_files(folder):
    """The four idx files of an MNIST-format folder.

    Args:
        folder: a directory.

    Returns:
        `{(split, part): path}` for the four entries of `IDX_FILES`, or `None`
        when the folder holds none of them.

    Raises:
        DataFileError: the folder holds some of the files but not all.
    """
    found, missing = {}, []
    for key, stem in IDX_FILES.items():
        candidates = [stem, stem + ".gz"]
        dotted = stem.replace("-idx", ".idx")
        candidates += [dotted, dotted + ".gz"]
        paths = [os.path.join(folder, c) for c in candidates]
        paths = [p for p in paths if os.path.isfile(p)]
        if paths:
            found[key] = paths[0]
        else:
            missing.append(stem + "[.gz]")
    if not found:
        return None
    if missing:
        raise DataFileError(f"{folder} holds MNIST-format idx files but lacks "
                         f"{', '.join(missing)}.")
    return found


def read_idx(path):
    """Reads an idx file (plain or gzipped) into a numpy array.

    The idx format: two zero bytes, a type byte (0x08 = uint8, ...), the number
    of dimensions, then each dimension as a big-endian uint32, then the data.

    Args:
        path: the file.

    Returns:
        A numpy array of the stored type and shape.

    Raises:
        DataFileError (a ValueError): the file cannot be read (a truncated or
            corrupted gzip stream), its header is not an idx header, or its
            data has the wrong length.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except EOFError as e:  # A gzip stream cut short.
        raise DataFileError(f"{path} is truncated ({e}); replace it with a complete "
                            "copy.") from e
    except (OSError, zlib.error) as e:  # Not gzip, corrupted, unreadable.
        raise DataFileError(f"{path} cannot be read ({type(e).__name__}: {e}).") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataFileError(f"{path} is not an idx file: it starts with {data[:4].hex()!r}, "
                         "expected 00 00, a type byte (08 for uint8) and the rank.")
    dtype = np.dtype(_IDX_TYPES[data[2]])
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataFileError(f"{path} is truncated inside its idx header.")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - offset != size:
        raise DataFileError(f"{path} holds {len(data) - offset} bytes of data, but its "
                         f"header announces shape {shape} of {dtype} ({size} bytes).")
    return np.frombuffer(data, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_split(files, split):
    """Images `(n, 28, 28)` uint8 and labels `(n,)` of one split, checked.

    Args:
        files: the result of `find_idx_files`.
        split: "train" or "test".

    Returns:
        `(images, labels)`.

    Raises:
        DataFileError: wrong type, shape, count or label range.
    """
    images = read_idx(files[(split, "images")])
    labels = read_idx(files[(split, "labels")])
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE[:2]:
        raise DataFileError(f"{files[(split, 'images')]} holds {images.dtype} images of shape "
                         f"{images.shape[1:]}, expected uint8 {IMAGE_SHAPE[:2]}.")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataFileError(f"{files[(split, 'labels')]} holds labels of shape {labels.shape}, "
                         f"expected ({len(images)},) to match the images.")
    if len(labels) and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise DataFileError(f"{files[(split, 'labels')]} holds labels in "
                         f"[{labels.min()}, {labels.max()}], expected [0, {NUM_CLASSES}).")
    return images, labels
