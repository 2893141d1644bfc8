"""Tiny-ImageNet-200 from the official zip (or its extracted folder), for TFDS."""

import os
import zipfile
import zlib

import tensorflow_datasets as tfds

from al_keras.data.errors import DataFileError

ZIP_NAME = "tiny-imagenet-200.zip"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
IMAGE_SHAPE = (64, 64, 3)


def find_tiny_imagenet(folder):
    """The Tiny-ImageNet source in `folder`: the zip or the extracted folder.

    Accepted: `folder/tiny-imagenet-200.zip`, `folder` itself being the zip
    or the extracted folder (it holds `wnids.txt`), or
    `folder/tiny-imagenet-200/wnids.txt`.

    Args:
        folder: a directory (or the zip's path).

    Returns:
        The path of the zip or of the extracted folder, or `None`.
    """
    candidates = [folder, os.path.join(folder, ZIP_NAME),
                  os.path.join(folder, "tiny-imagenet-200")]
    for path in candidates:
        if os.path.isfile(path) and zipfile.is_zipfile(path):
            return path
        if os.path.isfile(os.path.join(path, "wnids.txt")):
            return path
    return None


class _Source:
    """Reads files of the dataset, by path relative to its top folder."""

    def __init__(self, path):
        self.path = path
        self._zip = None
        if os.path.isfile(path):
            self._zip = zipfile.ZipFile(path)
            names = self._zip.namelist()
            tops = [n[: -len("wnids.txt")] for n in names
                    if n == "wnids.txt" or n.endswith("/wnids.txt")]
            if not tops:
                raise DataFileError(f"{path} has no wnids.txt: it is not {ZIP_NAME}.")
            self._top = min(tops, key=len)
            self.names = [n[len(self._top):] for n in names
                          if n.startswith(self._top) and not n.endswith("/")]
        else:
            self.names = []
            for root, _, files in os.walk(path):
                rel = os.path.relpath(root, path)
                self.names += [f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
                               for f in files]

    def read(self, name):
        try:
            if self._zip is not None:
                return self._zip.read(self._top + name)
            with open(os.path.join(self.path, *name.split("/")), "rb") as f:
                return f.read()
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DataFileError(f"{name} in {self.path} cannot be read ({type(e).__name__}: "
                                f"{e}); replace {self.path} with a complete copy.") from e

    def wnids(self):
        wnids = sorted(set(self.read("wnids.txt").decode().split()))
        if not wnids:
            raise DataFileError(f"wnids.txt in {self.path} lists no classes.")
        return wnids


class TinyImagenet(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Tiny-ImageNet-200: 64x64 RGB images in 200 classes (wnids, sorted).

    Give it a `SourceConfig` whose `source` is `tiny-imagenet-200.zip` or the
    extracted folder. `train` holds `train/<wnid>/images/*.JPEG`, `test` the
    official validation split (`val/val_annotations.txt`); the official test
    images have no labels and are left out. The JPEG bytes are stored as they
    are; the few grayscale ones decode to 3 channels.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self):
        wnids = _Source(self.builder_config.source).wnids()
        return tfds.core.DatasetInfo(
            builder=self,
            description="Tiny-ImageNet-200 (CS231n), 64x64 images of 200 classes.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=IMAGE_SHAPE, encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(names=wnids),
            }),
            supervised_keys=("image", "label"),
            homepage="http://cs231n.stanford.edu/",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything is local.
        source = _Source(self.builder_config.source)
        wnids = set(source.wnids())
        train = []  # train/<wnid>/images/<file>.JPEG
        for name in sorted(source.names):
            parts = name.split("/")
            if (len(parts) == 4 and parts[0] == "train" and parts[1] in wnids
                    and parts[2] == "images" and name.lower().endswith((".jpeg", ".jpg"))):
                train.append((name, parts[1]))
        if "val/val_annotations.txt" not in source.names:
            raise DataFileError(f"{source.path} has no val/val_annotations.txt.")
        test = []
        for line in source.read("val/val_annotations.txt").decode().splitlines():
            fields = line.split("\t")
            if len(fields) >= 2:
                if fields[1] not in wnids:
                    raise DataFileError(f"val/val_annotations.txt in {source.path} labels "
                                     f"{fields[0]} with {fields[1]}, which wnids.txt lacks.")
                test.append((f"val/images/{fields[0]}", fields[1]))
        for split, examples in (("train", train), ("val", test)):
            if not examples:
                raise DataFileError(f"{source.path} holds no {split} images.")
        return {"train": self._generate_examples(source, train),
                "test": self._generate_examples(source, test)}

    def _generate_examples(self, source, examples):
        for name, wnid in examples:
            yield name, {"image": source.read(name), "label": wnid}
