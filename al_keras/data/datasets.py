"""Datasets as batched tf.data pipelines, ready for `fit` and `evaluate`.

`load(name, batch_size=...)` returns a `Data` with a `train` dataset that is
reshuffled (seeded) every epoch and optionally augmented, and a fixed `test`
dataset; both yield `(float32 images, int32 class ids)` batches.

Without TensorFlow (Keras' JAX backend, `pip install al_keras` alone), the
digits and MNIST-format idx folders come as NumPy batches instead
(`keras.utils.PyDataset`, `al_keras.data.arrays`): the same splits, batch
sizes, steps an epoch and preprocessing, reshuffled every epoch by NumPy.
What needs TensorFlow (TFDS, CIFAR, Tiny-ImageNet, augmentation, the text
sets) raises `TensorFlowRequiredError` saying so (`needs_tensorflow`).

* `digits`: scikit-learn's 8x8 digits (embedded, `al_keras.data`), in [0, 1].
* `mnist`, `fashion_mnist`: from a folder of MNIST-format idx files given as
  `data_dir` (e.g. Debian's `dataset-fashion-mnist`), prepared by
  `al_keras.data.tfds_builders.IdxImages`, or else stock TFDS. Scaled to [0, 1],
  minus the training images' mean pixel value.
* `cifar10`, `cifar100`: stock TFDS; every image standardized
  (`tf.image.per_image_standardization`).
* `tiny_imagenet`: Tiny-ImageNet-200 from the official zip
  (`al_keras.data.tfds_builders.TinyImagenet`), standardized like CIFAR.
* `wordnet`, `ag_news`, `imdb`, `sst2`, `dbpedia`: text sets as token ids
  (`al_keras.data.text`), with the adapted `TextVectorization` as
  `Data.preprocessor`.

Prepared TFDS data lives in `$TFDS_DATA_DIR` (default `~/tensorflow_datasets`),
never in `data_dir` of an idx folder or a zip. Nothing is downloaded when the
download host cannot be reached: `load` fails in seconds and says how to
provide the data.
"""

import contextlib
import dataclasses
import os
import random
import socket
import tempfile
import threading

import numpy as np

from al_keras.data import digits as _embedded
from al_keras.data import text as text_lib
from al_keras.data.augmentation import augment_cifar, augment_tiny_imagenet, standardize
from al_keras.data.errors import (  # noqa: F401 (tensorflow_available: for callers)
    INSTALL_TFDS,
    DataFileError,
    DatasetUnavailableError,
    TensorFlowRequiredError,
    tensorflow_available,
    tensorflow_required,
)

IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100",
                  "tiny_imagenet")
DATASETS = IMAGE_DATASETS + text_lib.TEXT_DATASETS

# Where the stock TFDS builders (4.9) download from: (host, port).
DOWNLOAD_HOSTS = {
    "mnist": ("storage.googleapis.com", 443),
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    "cifar10": ("www.cs.toronto.edu", 443),
    "cifar100": ("www.cs.toronto.edu", 443),
}
CONNECT_TIMEOUT_S = 3.0

# What `load(pipeline=...)` builds: tf.data pipelines, or NumPy batches
# (`al_keras.data.arrays`; digits and idx folders only).  None: tf.data
# where TensorFlow is installed.
PIPELINES = ("tf.data", "numpy")

_AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow here.


@dataclasses.dataclass
class Data:
    """A dataset, batched and ready for `fit` / `evaluate`.

    Attributes:
        train: `(x float32, y int32)` batches, reshuffled every epoch (seeded),
            augmented if asked, prefetched; one pass is one epoch.
        test: the same without shuffling or augmentation.
        input_shape: one example's shape, e.g. `(28, 28, 1)`.
        num_classes: number of classes; labels are in `[0, num_classes)`.
        num_train: number of training examples.
        num_test: number of test examples.
        train_epochs: `train_epochs(first_epoch)`, the training batches of
            epoch `first_epoch`, then of the next, without end: epoch e's
            order and augmentation depend only on the seed and e, so a run
            resumed at epoch e sees what an uninterrupted run would (give
            `fit` its `steps_per_epoch`).
        preprocessor: text sets: the adapted `keras.layers.TextVectorization`
            that maps raw strings to the token ids of the batches; None for
            images.
        class_names: the classes' names, where the set has them.
        validation: the held-out training examples (`validation_examples`),
            batched like `test`; None without.
        num_validation: their number (0 without).
        pipeline: what the splits are: "tf.data" (`tf.data.Dataset`s) or
            "numpy" (`keras.utils.PyDataset`s of NumPy batches).
    """

    train: object
    test: object
    input_shape: tuple
    num_classes: int
    num_train: int
    num_test: int
    train_epochs: object = None
    preprocessor: object = None
    class_names: tuple = None
    validation: object = None
    num_validation: int = 0
    pipeline: str = "tf.data"


def load(name, *, batch_size, seed=0, data_dir=None, augment=False, test_batch_size=None,
         max_train_examples=0, max_test_examples=0, validation_examples=0,
         sequence_length=128, vocab_size=30000, with_words=False, vocabulary=None,
         pipeline=None):
    """Loads a dataset as batched tf.data pipelines (or NumPy batches).

    Args:
        name: one of `DATASETS`.
        batch_size: training batch size.
        seed: seed of the digits split, the shuffling and the augmentation.
        data_dir: where the data is. `mnist` / `fashion_mnist`: a folder of
            MNIST-format idx files (`train-images-idx3-ubyte[.gz]`, ...), e.g.
            `/usr/share/datasets/fashion-mnist`, or a TFDS data dir where it is
            prepared. `cifar10` / `cifar100`: a TFDS data dir (default
            `$TFDS_DATA_DIR` or `~/tensorflow_datasets`). `tiny_imagenet`: the
            folder holding `tiny-imagenet-200.zip` or the extracted folder
            (default `<TFDS data dir>/downloads/manual`). Unused for `digits`.
        augment: augment the training images (`cifar10`, `cifar100`,
            `tiny_imagenet` only): see `al_keras.data.augmentation`.
        test_batch_size: test batch size; defaults to `batch_size`.
        max_train_examples: if > 0, use only the first this many training
            examples (the same ones every epoch); likewise
        max_test_examples: for the test set.
        validation_examples: if > 0, the last this many examples of the
            training split are held out as `Data.validation` (never trained
            on; `max_train_examples` counts from the first of the rest).
        sequence_length, vocab_size, with_words, vocabulary: text sets
            only; see `al_keras.data.text.load_text`.
        pipeline: "tf.data", "numpy" (`keras.utils.PyDataset`s: digits and
            MNIST-format idx folders only), or None: tf.data where
            TensorFlow is installed, else NumPy.

    Returns:
        A `Data`.

    Raises:
        ValueError: unknown name, bad batch size, augment for a dataset
            without augmentation, empty data.
        DataFileError (a ValueError): a missing `data_dir`, a truncated or
            malformed data file; the message names it.
        DatasetUnavailableError: the data is not on disk and cannot be
            downloaded; the message says where to put it.
        TensorFlowRequiredError (an ImportError): data that needs
            TensorFlow (`needs_tensorflow`), which is not installed.
    """
    if pipeline not in (None,) + PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES} or None, got {pipeline!r}.")
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {', '.join(DATASETS)}.")
    test_batch_size = batch_size if test_batch_size is None else test_batch_size
    for arg, value in (("batch_size", batch_size), ("test_batch_size", test_batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}.")
    augmentation = {"cifar10": augment_cifar, "cifar100": augment_cifar,
                    "tiny_imagenet": augment_tiny_imagenet}.get(name)
    if augment and augmentation is None:
        raise ValueError(f"augment=True is not available for {name!r}; only for "
                         "cifar10, cifar100 and tiny_imagenet.")
    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
        if not os.path.exists(data_dir):
            raise DataFileError(
                f"data_dir {data_dir!r} does not exist: give the folder that holds "
                f"{name}'s files (config.data_dir), or leave it empty to use TFDS.")
    for arg, value in (("max_train_examples", max_train_examples),
                       ("max_test_examples", max_test_examples),
                       ("validation_examples", validation_examples)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{arg} must be an integer >= 0, got {value!r}.")
    if pipeline is None:
        pipeline = "tf.data" if tensorflow_available() else "numpy"
    elif pipeline == "tf.data" and not tensorflow_available():
        raise tensorflow_required("pipeline='tf.data'")
    if pipeline == "numpy":
        return _numpy_data(name, data_dir, batch_size=int(batch_size),
                           test_batch_size=int(test_batch_size), seed=seed,
                           augment=augment, max_train=int(max_train_examples),
                           max_test=int(max_test_examples),
                           validation=int(validation_examples))
    if name in text_lib.TEXT_DATASETS:
        return text_lib.load_text(
            name, batch_size=int(batch_size), test_batch_size=int(test_batch_size),
            seed=seed, data_dir=data_dir, sequence_length=sequence_length,
            vocab_size=vocab_size, with_words=with_words,
            max_train_examples=max_train_examples, max_test_examples=max_test_examples,
            validation_examples=validation_examples, vocabulary=vocabulary)
    batches = dict(batch_size=int(batch_size), test_batch_size=int(test_batch_size),
                   seed=seed, augment=augmentation if augment else None)
    limits = dict(max_train=int(max_train_examples), max_test=int(max_test_examples),
                  validation=int(validation_examples))

    import tensorflow as tf

    if name == "digits":
        (x, y), (x_test, y_test) = _embedded.load_digits(seed=seed, image_shape=True)
        data = Data(tf.data.Dataset.from_tensor_slices((x, y)),
                    tf.data.Dataset.from_tensor_slices((x_test, y_test)),
                    input_shape=tuple(x.shape[1:]), num_classes=10,
                    num_train=len(x), num_test=len(x_test))
        return pipelines(_limit(data, **limits), **batches)

    builder = _prepared_builder(name, data_dir)
    info = builder.info
    data = Data(_encoded(builder, "train"), _encoded(builder, "test"),
                input_shape=tuple(info.features["image"].shape),
                num_classes=int(info.features["label"].num_classes),
                num_train=int(info.splits["train"].num_examples),
                num_test=int(info.splits["test"].num_examples))
    if not data.num_train or not data.num_test:
        raise ValueError(f"{name} in {builder.data_dir} is empty: {data.num_train} training "
                         f"and {data.num_test} test examples.")
    mean = _pixel_mean(builder) if name in ("mnist", "fashion_mnist") else None

    def preprocess(images):  # uint8 batches -> float32, as documented above.
        images = tf.cast(images, tf.float32) / 255.0
        return standardize(images) if mean is None else images - tf.constant(mean, tf.float32)

    return pipelines(_limit(data, **limits), **batches, decode=_decoder(builder),
                  preprocess=preprocess)


def needs_tensorflow(name, data_dir=None, augment=False):
    """Why loading `name` this way needs TensorFlow: the one-line message of
    the `TensorFlowRequiredError` that `load` raises without it, or None for
    the data that comes as NumPy batches (the digits, an idx folder).

    Args:
        name, data_dir, augment: as `load` takes them.

    Raises:
        DataFileError: a `data_dir` that holds some of the idx files only.
    """
    if name in text_lib.TEXT_DATASETS:
        return str(tensorflow_required(
            f"The {name} text set (TFDS, tf.data and Keras' TextVectorization)",
            INSTALL_TFDS))
    if name in ("cifar10", "cifar100", "tiny_imagenet"):
        return str(tensorflow_required(
            f"{name} (read through TFDS, standardized"
            + (" and augmented" if augment else "") + " in tf.data)", INSTALL_TFDS))
    if augment:
        return None  # load refuses augment for the other sets.
    if name in ("mnist", "fashion_mnist"):
        folder = None if data_dir is None else os.path.expanduser(os.fspath(data_dir))
        if folder is not None and not os.path.exists(folder):
            return None  # load says that data_dir does not exist.
        if folder is not None and os.path.isdir(folder):
            from al_keras.data import idx_files

            if idx_files.find_idx_files(folder) is not None:
                return None
        where = (f"{name} from TFDS (config.data_dir is empty)" if folder is None
                 else f"{name} from a prepared TFDS copy in {folder} (it holds no "
                      "MNIST-format idx files)")
        example = {"fashion_mnist": " (e.g. /usr/share/datasets/fashion-mnist, Debian's "
                                    "dataset-fashion-mnist)"}.get(name, "")
        return str(tensorflow_required(where, INSTALL_TFDS)).rstrip(".") + (
            f"; or give a folder of its idx files{example} as data_dir (config.data_dir), "
            "read without TensorFlow.")
    return None


def _numpy_data(name, data_dir, *, batch_size, test_batch_size, seed, augment, max_train,
                max_test, validation):
    """`load`'s `Data` as NumPy batches (`al_keras.data.arrays`)."""
    from al_keras.data import arrays

    if name not in ("digits", "mnist", "fashion_mnist") or augment:
        reason = needs_tensorflow(name, data_dir, augment)
        if not tensorflow_available() and reason:
            raise TensorFlowRequiredError(reason)
        raise ValueError(f"pipeline='numpy' reads the digits and MNIST-format idx folders "
                         f"(without augmentation), not {name!r}"
                         + (" with augment=True." if augment else "."))
    preprocess = None
    if name == "digits":
        train, test = _embedded.load_digits(seed=seed, image_shape=True)
    else:
        from al_keras.data import idx_files

        files = idx_files.find_idx_files(data_dir) if data_dir and os.path.isdir(
            data_dir) else None
        if files is None:
            reason = needs_tensorflow(name, data_dir)
            if not tensorflow_available():
                raise TensorFlowRequiredError(reason)
            raise ValueError(f"pipeline='numpy' reads {name} from a folder of its "
                             f"MNIST-format idx files (data_dir), not from TFDS.")
        splits = []
        for split in ("train", "test"):
            images, labels = idx_files.read_idx_split(files, split)
            if not len(images):
                raise DataFileError(f"{files[(split, 'images')]} holds no images.")
            splits.append((images[..., None], labels.astype(np.int32)))
        train, test = splits
        # As IdxImages' metadata: all training images, before any limit.
        mean = np.float32(train[0].mean(dtype=np.float64) / 255.0)

        def preprocess(images):  # uint8 batches -> float32, as the tf.data path.
            return images.astype(np.float32) / np.float32(255.0) - mean

    (x, y), (x_test, y_test), held_out = arrays.limit(
        train, test, max_train=max_train, max_test=max_test, validation=validation)

    def train_epochs(first_epoch=0):
        return arrays.EpochBatches(x, y, batch_size, seed, first_epoch=first_epoch,
                                   preprocess=preprocess)

    return Data(
        arrays.EpochBatches(x, y, batch_size, seed, endless=False, preprocess=preprocess),
        arrays.Batches(x_test, y_test, test_batch_size, preprocess=preprocess),
        input_shape=tuple(x.shape[1:]), num_classes=10, num_train=len(x),
        num_test=len(x_test), train_epochs=train_epochs,
        validation=(None if held_out is None else
                    arrays.Batches(*held_out, test_batch_size, preprocess=preprocess)),
        num_validation=0 if held_out is None else len(held_out[1]),
        pipeline="numpy")


def _limit(data, max_train, max_test, validation=0):
    """`arrays.split_sizes` applied to a `Data` of tf.data splits, before
    shuffling."""
    from al_keras.data import arrays

    rest, kept, kept_test = arrays.split_sizes(
        data.num_train, data.num_test, max_train=max_train, max_test=max_test,
        validation=validation)
    if validation:
        data = dataclasses.replace(data, validation=data.train.skip(rest),
                                   num_validation=validation,
                                   train=data.train.take(rest), num_train=rest)
    if kept < data.num_train:
        data = dataclasses.replace(data, train=data.train.take(kept), num_train=kept)
    if kept_test < data.num_test:
        data = dataclasses.replace(data, test=data.test.take(kept_test), num_test=kept_test)
    return data


def pipelines(data, *, batch_size, test_batch_size, seed, augment, decode=None,
              preprocess=None):
    """Shuffles, decodes, augments, batches, preprocesses and prefetches both splits.

    Args:
        data: a `Data` whose `train` and `test` hold single examples.
        batch_size, test_batch_size: batch sizes of the two splits.
        seed: seed of the shuffle and the augmentation.
        augment: None, or `augment(image, seed)` for training images.
        decode: optional map of a stored example to `(image, label)`.
        preprocess: optional map of an image batch to float32 (training
            batches get it only without `augment`, which standardizes).

    Returns:
        `data` with batched, prefetched `train`, `train_epochs` and `test`
        (as `load` gives).
    """
    import tensorflow as tf

    examples = data.train
    if seed is None:
        seed = random.getrandbits(31)

    def epoch_batches(epoch_seed):
        """One epoch's batches, shuffled and augmented by `epoch_seed` alone."""
        train = examples.batch(data.num_train).map(
            lambda *split: _permuted(split if len(split) > 1 else split[0],
                                     tf.stack([epoch_seed, 0]))).unbatch()
        if decode is not None:  # After the shuffle, whose buffer holds encoded images.
            train = train.map(decode, num_parallel_calls=_AUTOTUNE)
        if augment is not None:  # A stateless seed per example: (epoch, position).
            train = train.enumerate().map(
                lambda i, xy: (augment(xy[0], tf.stack([epoch_seed, i])), xy[1]),
                num_parallel_calls=_AUTOTUNE)
        train = train.batch(batch_size)
        if preprocess is not None and augment is None:
            train = train.map(lambda x, y: (preprocess(x), y), num_parallel_calls=_AUTOTUNE)
        return train

    def train_epochs(first_epoch=0):
        epochs = tf.data.Dataset.counter(int(first_epoch))
        return epochs.map(lambda e: _epoch_seed(seed, e)).flat_map(
            epoch_batches).prefetch(_AUTOTUNE)

    # One pass, one epoch: a new (seeded) random epoch seed every pass.
    train = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    def evaluation_batches(split):
        if decode is not None:
            split = split.map(decode, num_parallel_calls=_AUTOTUNE)
        split = split.batch(test_batch_size)
        if preprocess is not None:
            split = split.map(lambda x, y: (preprocess(x), y), num_parallel_calls=_AUTOTUNE)
        return split.prefetch(_AUTOTUNE)

    return dataclasses.replace(
        data, train=train.flat_map(epoch_batches).prefetch(_AUTOTUNE),
        train_epochs=train_epochs, test=evaluation_batches(data.test),
        validation=(None if data.validation is None
                    else evaluation_batches(data.validation)))


def _permuted(examples, seed):
    """`examples` (a nest of same-length tensors) in one random order that
    depends on the stateless `seed` alone.  (Dataset.shuffle takes its seed
    as a Python int when a global seed is set, not as a tensor; like its
    buffer of the whole split, this holds the split in memory.)"""
    import tensorflow as tf

    count = tf.shape(tf.nest.flatten(examples)[0])[0]
    order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=seed)
    return tf.nest.map_structure(lambda t: tf.gather(t, order), examples)


def _epoch_seed(seed, epoch):
    """The seed of epoch `epoch` (int64 tensor) of a run seeded `seed`."""
    import tensorflow as tf

    return tf.constant(seed, tf.int64) * 1_000_003 + epoch


def _encoded(builder, split):
    """The split's examples in stored order, images still encoded."""
    import tensorflow_datasets as tfds

    return builder.as_dataset(split=split, shuffle_files=False,
                              decoders={"image": tfds.decode.SkipDecoding()})


def _decoder(builder):
    """Maps an encoded example to `(uint8 image, int32 label)`."""
    import tensorflow as tf

    feature = builder.info.features["image"]

    def decode(example):
        image = tf.ensure_shape(feature.decode_example(example["image"]), feature.shape)
        return image, tf.cast(example["label"], tf.int32)

    return decode


def _pixel_mean(builder):
    """The training images' mean pixel value in [0, 1]."""
    import tensorflow as tf

    metadata = builder.info.metadata
    if metadata is not None and "pixel_mean" in metadata:  # IdxImages store it.
        return float(metadata["pixel_mean"])
    images = builder.as_dataset(split="train", shuffle_files=False).map(lambda ex: ex["image"])
    sums = images.batch(10_000).map(lambda x: tf.reduce_sum(tf.cast(x, tf.float64)))
    total = float(sums.reduce(tf.constant(0.0, tf.float64), lambda a, b: a + b))
    info = builder.info
    pixels = info.splits["train"].num_examples * np.prod(info.features["image"].shape)
    return total / 255.0 / pixels


def tfds_data_dir():
    """Where prepared TFDS data is written: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`."""
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _prepared_builder(name, data_dir):
    """The TFDS builder of `name`, prepared on disk (or an error saying how to)."""
    with _tfds_scratch_folder():
        return _builder(name, data_dir)


@contextlib.contextmanager
def _tfds_scratch_folder():
    """Gives TFDS' temporary folders a private parent, removed afterwards.

    TFDS 4.9 makes a `tempfile.mkdtemp("tfds")` folder whenever it makes the
    builder of an unprepared dataset (`DatasetInfo.initialize_from_bucket`)
    and leaves it behind when nothing is fetched (offline: always): one empty
    `/tmp/tmp*tfds` per call.
    """
    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="al_keras_tfds_") as scratch:
        tempfile.tempdir = scratch
        try:
            yield
        finally:
            tempfile.tempdir = saved


def _builder(name, data_dir):
    from al_keras.data import tfds_builders

    if name == "tiny_imagenet":
        return _tiny_imagenet_builder(data_dir)
    if name in ("mnist", "fashion_mnist") and data_dir is not None and os.path.isdir(data_dir):
        files = tfds_builders.find_idx_files(data_dir)
        if files is not None:
            config = tfds_builders.SourceConfig.for_files(name, data_dir, files.values())
            return _prepare_local(tfds_builders.IdxImages(config=config,
                                                          data_dir=tfds_data_dir()))
    return _stock_builder(name, data_dir)


def _tiny_imagenet_builder(data_dir):
    from al_keras.data import tfds_builders
    from al_keras.data.tfds_builders import tiny_imagenet

    folder = data_dir or os.path.join(tfds_data_dir(), "downloads", "manual")
    source = tfds_builders.find_tiny_imagenet(folder) if os.path.exists(folder) else None
    if source is None:
        raise DatasetUnavailableError(
            f"tiny_imagenet needs the official {tiny_imagenet.ZIP_NAME} ({tiny_imagenet.URL}), "
            f"but {folder} holds neither it nor the extracted tiny-imagenet-200 folder. Put "
            "the zip in that folder, or give its folder as data_dir (config.data_dir).")
    keys = [source] if os.path.isfile(source) else [
        os.path.join(source, "wnids.txt"), os.path.join(source, "val", "val_annotations.txt")]
    config = tfds_builders.SourceConfig.for_files(
        "tiny_imagenet", source, [k for k in keys if os.path.exists(k)])
    return _prepare_local(tfds_builders.TinyImagenet(config=config, data_dir=tfds_data_dir()))


def _prepare_local(builder):
    """Prepares a builder of local files once (no GCS look-up, no download)."""
    import tensorflow_datasets as tfds

    if not builder.is_prepared():
        _download_and_prepare(
            builder, download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder


def _download_and_prepare(builder, **kwargs):
    """`builder.download_and_prepare(**kwargs)`; a preparation that fails
    leaves no empty folder of its own in the TFDS data dir (a later run or
    `tfds` would take it for a dataset)."""
    root = os.path.abspath(builder.data_dir_root)
    folders = [os.path.join(root, "downloads", "extracted"), os.path.join(root, "downloads")]
    folder = os.path.abspath(builder.data_dir)
    while folder.startswith(root + os.sep):
        folders.append(folder)
        folder = os.path.dirname(folder)
    new = sorted((f for f in folders if not os.path.exists(f)), key=len, reverse=True)
    try:
        builder.download_and_prepare(**kwargs)
    except BaseException:
        for folder in new:
            for parent, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(parent)  # Only empty ones: nothing else is touched.
        raise


def _stock_builder(name, data_dir):
    """Stock TFDS `name` in `data_dir` (or the default TFDS data dir): prepared
    there already, or downloaded if its host answers, or an error saying how."""
    import tensorflow_datasets as tfds

    root = data_dir or tfds_data_dir()
    builder = tfds.builder(name, data_dir=root)
    if builder.is_prepared():
        return builder
    if name in ("mnist", "fashion_mnist") and data_dir is not None:
        raise DatasetUnavailableError(
            f"data_dir {data_dir} holds neither MNIST-format idx files "
            "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
            "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) nor a prepared "
            f"TFDS {name}.")
    host, port = DOWNLOAD_HOSTS[name]
    if not can_connect(host, port):
        how = {
            "fashion_mnist": "install Debian's dataset-fashion-mnist and set data_dir "
                             "(config.data_dir) to /usr/share/datasets/fashion-mnist, or ",
            "mnist": "set data_dir (config.data_dir) to a folder with the MNIST idx "
                     "files (train-images-idx3-ubyte.gz, ...), or ",
        }.get(name, "")
        raise DatasetUnavailableError(
            f"{name} is not prepared in {root} and its download host {host} cannot be "
            f"reached. To provide it, {how}prepare it on a connected machine with "
            f"`tfds build {name} --data_dir=DIR` and copy DIR/{name} to {root}/{name}.")
    _download_and_prepare(builder)
    return builder


def can_connect(host, port, timeout=CONNECT_TIMEOUT_S):
    """Whether a TCP connection to `host:port` opens within `timeout` seconds.

    The name lookup counts against the timeout too (it runs in a thread).
    """
    opened = []

    def connect():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)
