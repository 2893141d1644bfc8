"""What loading data can fail with, in words a user can act on.

Both are errors in what the user gave (not in al_keras): `train.py` prints
their message as one line.
"""


class DatasetUnavailableError(RuntimeError):
    """The data is neither on disk nor downloadable; the message says how to get it."""


class DataFileError(ValueError):
    """A data folder or file that is missing, truncated or malformed; the
    message names the path and what is wrong with it."""
