"""The embedded dataset: scikit-learn's 8x8 handwritten digits (offline)."""

import numpy as np


def load_digits(test_fraction=0.2, seed=0, image_shape=False):
    """The 1,797 8x8 digits of scikit-learn, split into train and test.

    The split is stratified by class and fixed by `seed`, so every caller with
    the same arguments gets the same examples.

    Args:
        test_fraction: share of examples held out for testing.
        seed: seed of the split.
        image_shape: return images `(n, 8, 8, 1)` instead of vectors `(n, 64)`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: float32 features scaled to
        [0, 1], int32 class ids in [0, 10).
    """
    from sklearn import datasets  # Only needed for this embedded dataset.

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    digits = datasets.load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    if image_shape:
        x = x.reshape(-1, 8, 8, 1)
    rng = np.random.default_rng(seed)
    test_idx = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        test_idx.extend(idx[: int(round(len(idx) * test_fraction))])
    test_mask = np.zeros(len(y), bool)
    test_mask[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~test_mask))
    test_idx = np.flatnonzero(test_mask)
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])
