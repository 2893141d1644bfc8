"""WordNet noun supersenses: a TFDS builder for WordNet's `data.noun`.

Each synset line of WordNet 3.0's `data.noun` (Debian's `wordnet-base`
package: `/usr/share/wordnet/data.noun`; the license header's lines start
with two spaces) reads

    offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt
    [pointers ...] | gloss

(`wndb(5WN)`).  An example is one synset: its gloss as `text`, its words
(underscores as spaces) as `words`, and its lexicographer file -- one of
the 26 noun supersenses `noun.Tops` ... `noun.time` (`lexnames(5WN)`, file
numbers 3 to 28) -- as `label`.  82,115 synsets, unbalanced (11,587
`noun.artifact`, 42 `noun.motive`).  The test split is a fixed, seeded,
stratified 10% of every class (`stratified_split`).
"""

import numpy as np
import tensorflow_datasets as tfds

from al_keras.data.errors import DataFileError

# lexnames(5WN): file numbers 3..28 are the noun files.
NOUN_SUPERSENSES = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time",
)
FIRST_NOUN_FILE = 3
TEST_FRACTION = 0.1
SPLIT_SEED = 0
FILE_NAME = "data.noun"


def parse_data_noun(path):
    """The synsets of a `data.noun` file.

    Returns:
        A list of `(offset, label, words, gloss)`: the synset offset (str),
        the supersense index in `[0, 26)`, the words joined by spaces, and
        the gloss.

    Raises:
        DataFileError: a line that is not a noun synset line, naming it.
    """
    synsets = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if line.startswith("  ") or not line.strip():  # The license header.
                    continue
                synsets.append(_parse_line(line, path, number))
    except OSError as e:
        raise DataFileError(f"{path} cannot be read ({type(e).__name__}: {e}).") from e
    if not synsets:
        raise DataFileError(f"{path} holds no synset lines.")
    return synsets


def _parse_line(line, path, number):
    head, bar, gloss = line.partition("|")
    fields = head.split()
    try:
        if not bar or len(fields) < 6 or fields[2] != "n":
            raise ValueError("not a noun synset line")
        file_number = int(fields[1])
        count = int(fields[3], 16)
        if not FIRST_NOUN_FILE <= file_number < FIRST_NOUN_FILE + len(NOUN_SUPERSENSES):
            raise ValueError(f"lexicographer file {file_number} is not a noun file (3-28)")
        words = fields[4:4 + 2 * count:2]
        if len(words) != count or not count:
            raise ValueError(f"announces {count} words, holds {len(words)}")
    except ValueError as e:
        raise DataFileError(f"{path} line {number} is malformed ({e}): "
                            f"{line[:80].rstrip()!r}") from None
    return (fields[0], file_number - FIRST_NOUN_FILE,
            " ".join(w.replace("_", " ") for w in words), gloss.strip())


def stratified_split(labels, test_fraction=TEST_FRACTION, seed=SPLIT_SEED):
    """Boolean test mask: a seeded `test_fraction` of each class's examples.

    Per class of n examples, round(n * test_fraction) of them (at least one
    when n >= 2), chosen by a permutation seeded by `seed` and the class.
    """
    labels = np.asarray(labels)
    test = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(len(members) * test_fraction))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        else:
            count = 0
        order = np.random.default_rng([seed, int(label)]).permutation(members)
        test[order[:count]] = True
    return test


class WordnetNounSupersenses(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """WordNet noun synsets labelled with their supersense (lexicographer file).

    Give it a `SourceConfig` whose `source` is the folder holding
    `data.noun`.  Features: `text` (the gloss), `words`, `label` (26
    classes, `NOUN_SUPERSENSES`), `offset`.  Splits: `train` and `test`
    (`stratified_split`), each in a seeded random order (`stored_order`).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"WordNet noun supersenses from {self.builder_config.source}.",
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "words": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=NOUN_SUPERSENSES),
                "offset": tfds.features.Text(),
            }),
            supervised_keys=("text", "label"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything is local.
        import os

        synsets = parse_data_noun(os.path.join(self.builder_config.source, FILE_NAME))
        test = stratified_split([s[1] for s in synsets])
        return {"train": self._generate_examples(synsets, ~test),
                "test": self._generate_examples(synsets, test)}

    def _generate_examples(self, synsets, keep):
        for index in stored_order(keep):
            offset, label, words, gloss = synsets[index]
            yield offset, {"text": gloss, "words": words, "label": label,
                           "offset": offset}


def stored_order(keep, seed=SPLIT_SEED):
    """The indices where `keep` is True, in one order seeded by `seed`."""
    return np.random.default_rng([seed, 1]).permutation(np.flatnonzero(keep))
