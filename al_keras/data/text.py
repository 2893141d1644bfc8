"""Text classification sets as batched tf.data pipelines of token ids.

`load_text(name, ...)` returns a `datasets.Data` whose batches are
`(int32 token ids (batch, sequence_length), int32 class ids)`; its
`preprocessor` is the `keras.layers.TextVectorization` that made the ids,
adapted on the training split only (lower-cased, punctuation stripped,
split on whitespace; the `vocab_size - 2` most frequent words, id 0 for
padding, 1 for out-of-vocabulary words).  Texts longer than
`sequence_length` tokens are truncated, shorter ones post-padded.

* `wordnet`: WordNet noun supersenses from Debian's `wordnet-base`
  (`data_dir` default `/usr/share/wordnet`), prepared by
  `al_keras.data.tfds_builders.WordnetNounSupersenses`; the text is the
  gloss, or the synset's words and the gloss (`with_words`).
* `ag_news`, `imdb`, `sst2`, `dbpedia`: stock TFDS `ag_news_subset`,
  `imdb_reviews`, `glue/sst2` (its labelled `validation` split as the test
  set) and `dbpedia`; title and body joined where a set has both.  Offline,
  they fail in seconds saying how to provide them.

All need TensorFlow (tf.data, TFDS, `TextVectorization`): without it,
`load_text` raises `errors.TensorFlowRequiredError` saying so.
"""

import dataclasses
import os

import keras
import numpy as np

from al_keras.data.errors import (
    INSTALL_TFDS,
    DataFileError,
    DatasetUnavailableError,
    import_tensorflow,
)

WORDNET_DIR = "/usr/share/wordnet"


@dataclasses.dataclass(frozen=True)
class TextSet:
    """A stock TFDS text set: its name, text fields, splits and download host."""

    tfds_name: str
    fields: tuple
    test_split: str
    host: tuple


STOCK_TEXT_SETS = {
    "ag_news": TextSet("ag_news_subset", ("title", "description"), "test",
                       ("drive.google.com", 443)),
    "imdb": TextSet("imdb_reviews", ("text",), "test", ("ai.stanford.edu", 80)),
    "sst2": TextSet("glue/sst2", ("sentence",), "validation",
                    ("dl.fbaipublicfiles.com", 443)),
    "dbpedia": TextSet("dbpedia", ("title", "content"), "test",
                       ("s3.amazonaws.com", 443)),
}
TEXT_DATASETS = ("wordnet",) + tuple(STOCK_TEXT_SETS)


def load_text(name, *, batch_size, test_batch_size, seed, data_dir=None,
              sequence_length=128, vocab_size=30000, with_words=False,
              max_train_examples=0, max_test_examples=0, validation_examples=0,
              vocabulary=None):
    """Loads a text set as batched pipelines of token ids; see the module doc.

    Args:
        name: one of `TEXT_DATASETS`.
        batch_size, test_batch_size: batch sizes.
        seed: seed of the per-epoch shuffles.
        data_dir: `wordnet`: the folder holding `data.noun`; stock sets: a
            TFDS data dir.
        sequence_length: tokens per example (longer texts truncated).
        vocab_size: the vectorizer's ids, padding and out-of-vocabulary
            included.
        with_words: `wordnet` only: the synset's words before its gloss.
        max_train_examples, max_test_examples: if > 0, the first this many.
        validation_examples: if > 0, the last this many training examples
            held out (`Data.validation`; the vectorizer does not see them).
        vocabulary: optional list of words (a run's saved vocabulary, ids 2
            and up): the vectorizer uses it instead of adapting.

    Returns:
        A `datasets.Data` with `preprocessor` and `class_names`.
    """
    from al_keras.data import datasets

    for arg, value, minimum in (("sequence_length", sequence_length, 1),
                                ("vocab_size", vocab_size, 3)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{arg} must be an integer >= {minimum}, got {value!r}.")
    if with_words and name != "wordnet":
        raise ValueError(f"with_words is for wordnet only (the synset's words); "
                         f"{name!r} has none.")
    tf = import_tensorflow(f"The {name} text set (tf.data, TFDS and Keras' "
                           "TextVectorization)", INSTALL_TFDS)
    builder = _builder(name, data_dir)
    fields = (("words", "text") if with_words else ("text",)) if name == "wordnet" \
        else STOCK_TEXT_SETS[name].fields
    test_split = "test" if name == "wordnet" else STOCK_TEXT_SETS[name].test_split
    info = builder.info
    label = info.features["label"]
    data = datasets.Data(
        _texts(builder, "train", fields), _texts(builder, test_split, fields),
        input_shape=(int(sequence_length),), num_classes=int(label.num_classes),
        num_train=int(info.splits["train"].num_examples),
        num_test=int(info.splits[test_split].num_examples),
        class_names=tuple(label.names))
    if not data.num_train or not data.num_test:
        raise ValueError(f"{name} in {builder.data_dir} is empty: {data.num_train} "
                         f"training and {data.num_test} test examples.")
    data = datasets._limit(data, max_train=int(max_train_examples),
                           max_test=int(max_test_examples),
                           validation=int(validation_examples))
    vectorizer = adapted_vectorizer(data.train.map(lambda text, _: text),
                                    vocab_size=int(vocab_size),
                                    sequence_length=int(sequence_length),
                                    vocabulary=vocabulary)
    data = dataclasses.replace(data, preprocessor=vectorizer)
    return datasets.pipelines(
        data, batch_size=int(batch_size), test_batch_size=int(test_batch_size),
        seed=seed, augment=None,
        preprocess=lambda texts: tf.cast(vectorizer(texts), tf.int32))


def adapted_vectorizer(texts, *, vocab_size, sequence_length, vocabulary=None):
    """A `TextVectorization` adapted on `texts` (a dataset of strings).

    Returned with its vocabulary as a list in its config (so the model's
    config, a `RayPipeline` stage and `safe_mode` loading carry it), not
    only as a saved asset.  With `vocabulary` (words of ids 2 and up) it
    is not adapted but given those words.
    """
    options = dict(max_tokens=vocab_size, output_sequence_length=sequence_length,
                   standardize="lower_and_strip_punctuation", split="whitespace",
                   name="text_vectorizer")
    if vocabulary is None:
        adapting = keras.layers.TextVectorization(**options)
        adapting.adapt(texts.batch(4096))
        vocabulary = adapting.get_vocabulary()[2:]  # Without "" and "[UNK]".
    if not vocabulary:
        raise ValueError("The training texts hold no words to build a vocabulary of.")
    return keras.layers.TextVectorization(vocabulary=vocabulary, **options)


def _texts(builder, split, fields):
    """`(text, label)` examples of a split, fields joined by a space."""
    import tensorflow as tf

    def example(ex):
        parts = [ex[f] for f in fields]
        text = parts[0] if len(parts) == 1 else tf.strings.reduce_join(
            tf.stack(parts), separator=" ")
        return text, tf.cast(ex["label"], tf.int32)

    return builder.as_dataset(split=split, shuffle_files=False).map(
        example, num_parallel_calls=tf.data.AUTOTUNE)


def _builder(name, data_dir):
    from al_keras.data import datasets

    if name not in TEXT_DATASETS:
        raise ValueError(f"Unknown text set {name!r}; expected one of {TEXT_DATASETS}.")
    with datasets._tfds_scratch_folder():
        if name == "wordnet":
            return _wordnet_builder(data_dir)
        return _stock_builder(name, data_dir)


def _wordnet_builder(data_dir):
    from al_keras.data import datasets, tfds_builders
    from al_keras.data.tfds_builders import wordnet_nouns

    folder = data_dir or WORDNET_DIR
    path = os.path.join(folder, wordnet_nouns.FILE_NAME)
    if not os.path.isfile(path):
        if data_dir is None:
            raise DatasetUnavailableError(
                f"wordnet needs WordNet 3.0's {wordnet_nouns.FILE_NAME}, not found in "
                f"{WORDNET_DIR}: install Debian's wordnet-base (apt-get install "
                "wordnet-base), or give the folder holding data.noun as data_dir "
                "(config.data_dir).")
        raise DataFileError(f"data_dir {folder!r} holds no {wordnet_nouns.FILE_NAME}: give "
                            "the folder of WordNet 3.0's data files (e.g. /usr/share/wordnet).")
    config = tfds_builders.SourceConfig.for_files("wordnet", folder, [path])
    return datasets._prepare_local(tfds_builders.WordnetNounSupersenses(
        config=config, data_dir=datasets.tfds_data_dir()))


def _stock_builder(name, data_dir):
    import tensorflow_datasets as tfds

    from al_keras.data import datasets

    spec = STOCK_TEXT_SETS[name]
    root = data_dir or datasets.tfds_data_dir()
    builder = tfds.builder(spec.tfds_name, data_dir=root)
    if builder.is_prepared():
        return builder
    host, port = spec.host
    if not datasets.can_connect(host, port):
        raise DatasetUnavailableError(
            f"{name} (TFDS {spec.tfds_name}) is not prepared in {root} and its download "
            f"host {host} cannot be reached. To provide it, prepare it on a connected "
            f"machine with `tfds build {spec.tfds_name} --data_dir=DIR` and copy "
            f"DIR/{spec.tfds_name.split('/')[0]} to {root}/; or train offline on "
            "configs/wordnet.py.")
    datasets._download_and_prepare(builder)
    return builder
