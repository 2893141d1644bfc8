"""A TFDS builder config for local source files, named after where they are."""

import dataclasses
import hashlib
import os

import tensorflow_datasets as tfds


@dataclasses.dataclass(eq=False)
class SourceConfig(tfds.core.BuilderConfig):
    """A builder config that carries the path of the files to prepare.

    Attributes:
        source: the folder (or zip file) the builder reads.
    """

    source: str = ""

    @classmethod
    def for_files(cls, prefix, source, files):
        """A config whose name is `<prefix>_<hash>`, unique to these files.

        The hash covers the source's real path and each file's name, size and
        modification time: another folder, or files rewritten in place, get
        another name and so their own prepared data.

        Args:
            prefix: start of the config name, e.g. the dataset name.
            source: the folder or zip file the builder reads.
            files: the paths whose sizes and times key the config.

        Returns:
            A `SourceConfig`.
        """
        digest = hashlib.sha256(os.path.realpath(source).encode())
        for path in sorted(files):
            stat = os.stat(path)
            digest.update(
                f"\0{os.path.basename(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return cls(name=f"{prefix}_{digest.hexdigest()[:16]}", source=os.fspath(source),
                   description=f"{prefix} prepared from {source}")
