"""al_keras.data.datasets: tf.data pipelines, the idx and Tiny-ImageNet builders,
failing fast offline. Every TFDS directory is under tmp_path; nothing downloads."""

import gzip
import os
import socket
import tempfile
import threading
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import al_keras
from al_keras.data import augmentation, datasets
from al_keras.data.tfds_builders import read_idx

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
CAN_CONNECT = datasets.can_connect  # The real one; tests patch it away.


@pytest.fixture(autouse=True)
def tfds_dir(tmp_path, monkeypatch):
    """A private TFDS data dir, and no network: connecting is an error."""
    path = tmp_path / "tfds"
    monkeypatch.setenv("TFDS_DATA_DIR", str(path))

    def no_network(host, port, timeout=None):
        raise AssertionError(f"load tried to reach {host}:{port}")

    monkeypatch.setattr(datasets, "can_connect", no_network)
    return path


def _arrays(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def _sorted_rows(x, y):
    order = sorted(range(len(x)), key=lambda i: (x[i].tobytes(), int(y[i])))
    return x[order], y[order]


# --- digits -----------------------------------------------------------------

def test_digits_shapes_dtypes_and_values():
    data = datasets.load("digits", batch_size=32)
    assert (data.input_shape, data.num_classes) == ((8, 8, 1), 10)
    assert (data.num_train, data.num_test) == (1438, 359)
    assert data.train.element_spec[0].dtype == tf.float32
    assert data.train.element_spec[1].dtype == tf.int32
    batches = list(data.train)
    assert len(batches) == -(-1438 // 32)  # Not repeated; last batch partial.
    assert batches[0][0].shape == (32, 8, 8, 1)
    x, y = _arrays(data.train)
    assert x.min() >= 0 and x.max() <= 1 and set(np.unique(y)) == set(range(10))
    x_test, _ = _arrays(data.test)
    assert x_test.shape == (359, 8, 8, 1)


def test_digits_train_reshuffles_each_epoch_test_is_stable():
    data = datasets.load("digits", batch_size=64, test_batch_size=100, seed=3)
    (x_ref, y_ref), (x_test_ref, y_test_ref) = al_keras.data.load_digits(seed=3,
                                                                         image_shape=True)
    x1, y1 = _arrays(data.train)
    x2, y2 = _arrays(data.train)
    assert not np.array_equal(x1, x2)  # Another order in epoch 2...
    for x, y in ((x1, y1), (x2, y2)):  # ...of the same examples.
        np.testing.assert_array_equal(_sorted_rows(x, y)[0], _sorted_rows(x_ref, y_ref)[0])
        np.testing.assert_array_equal(_sorted_rows(x, y)[1], _sorted_rows(x_ref, y_ref)[1])
    assert [b[0].shape[0] for b in data.test] == [100, 100, 100, 59]
    for _ in range(2):
        x_test, y_test = _arrays(data.test)
        np.testing.assert_array_equal(x_test, x_test_ref)
        np.testing.assert_array_equal(y_test, y_test_ref)
    first = _arrays(datasets.load("digits", batch_size=64, seed=3).train)[1]
    assert np.array_equal(first, y1)  # The same seed gives the same epochs...
    other = _arrays(datasets.load("digits", batch_size=64, seed=4).train)[1]
    assert not np.array_equal(other[:100], y1[:100])  # ...another seed others.


def test_train_epochs_depend_only_on_the_seed_and_the_epoch():
    data = datasets.load("digits", batch_size=64, seed=3)
    steps = -(-data.num_train // 64)  # The last batch of each epoch is partial.

    def epochs(first, count):
        batches = list(data.train_epochs(first).take(steps * count))
        return [np.concatenate([y for _, y in batches[e * steps:(e + 1) * steps]])
                for e in range(count)]

    from_start, resumed = epochs(0, 4), epochs(2, 2)
    np.testing.assert_array_equal(resumed[0], from_start[2])  # A run resumed at
    np.testing.assert_array_equal(resumed[1], from_start[3])  # epoch 2 sees the same.
    assert [len(y) for y in from_start] == [data.num_train] * 4
    assert not np.array_equal(from_start[0], from_start[1])
    np.testing.assert_array_equal(np.sort(from_start[0]), np.sort(from_start[1]))
    again = datasets.load("digits", batch_size=64, seed=3)
    np.testing.assert_array_equal(
        np.concatenate([y for _, y in again.train_epochs(1).take(steps)]), from_start[1])


# --- bad arguments ----------------------------------------------------------

def test_unknown_name_lists_datasets():
    with pytest.raises(ValueError, match=r"'imagenet'.*digits, mnist, fashion_mnist, cifar10"):
        datasets.load("imagenet", batch_size=8)


@pytest.mark.parametrize("bad", [0, -1, 2.5, None, True])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, got"):
        datasets.load("digits", batch_size=bad)
    with pytest.raises(ValueError, match=r"test_batch_size must be a positive integer"):
        datasets.load("digits", batch_size=8, test_batch_size=bad or 0)


def test_bad_data_dir_and_augment(tmp_path):
    with pytest.raises(ValueError, match=r"data_dir .*nowhere.* does not exist"):
        datasets.load("fashion_mnist", batch_size=8, data_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"augment=True is not available for 'mnist'"):
        datasets.load("mnist", batch_size=8, augment=True)
    with pytest.raises(datasets.DatasetUnavailableError,
                       match=r"holds neither MNIST-format idx files.*train-images-idx3-ubyte"):
        datasets.load("mnist", batch_size=8, data_dir=tmp_path)


# --- MNIST-format idx folders -----------------------------------------------

def _write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    with (gzip.open if compress else open)(str(path) + (".gz" if compress else ""), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _idx_folder(path, seed, compress, n_train=20, n_test=10):
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    path.mkdir()
    for name, array in arrays.items():
        _write_idx(path / name, array, compress)
    return {k: v.astype(np.uint8) for k, v in arrays.items()}


def test_read_idx_parses_header_and_rejects_garbage(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    _write_idx(tmp_path / "a", array, compress=False)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a")), array)
    (tmp_path / "b").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match=r"holds 3 bytes of data.*shape \(5,\)"):
        read_idx(str(tmp_path / "b"))
    (tmp_path / "c").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match=r"is not an idx file"):
        read_idx(str(tmp_path / "c"))
    # Gzipped files cut short or not gzip at all name the file, as DataFileError.
    _write_idx(tmp_path / "d", np.arange(4000).reshape(40, 100) % 256, compress=True)
    cut = tmp_path / "d.gz"
    cut.write_bytes(cut.read_bytes()[:-30])
    with pytest.raises(datasets.DataFileError, match=rf"^{cut} is truncated \(Compressed"):
        read_idx(str(cut))
    (tmp_path / "e.gz").write_bytes(b"plain bytes, not gzip")
    with pytest.raises(datasets.DataFileError, match=r"e.gz cannot be read \(BadGzipFile"):
        read_idx(str(tmp_path / "e.gz"))


def test_idx_folders_load_exactly_and_do_not_collide(tmp_path, tfds_dir):
    written = {"gz": _idx_folder(tmp_path / "gz", seed=0, compress=True),
               "plain": _idx_folder(tmp_path / "plain", seed=1, compress=False),
               "plain2": _idx_folder(tmp_path / "plain2", seed=2, compress=False)}
    for name in os.listdir(tmp_path / "plain2"):  # Same names, sizes and times:
        os.utime(tmp_path / "plain2" / name, ns=(10**18, 10**18))  # only the path differs.
        os.utime(tmp_path / "plain" / name, ns=(10**18, 10**18))
    for folder, arrays in written.items():
        before = sorted(os.listdir(tmp_path / folder))
        data = datasets.load("fashion_mnist", data_dir=tmp_path / folder, batch_size=6, seed=0)
        assert sorted(os.listdir(tmp_path / folder)) == before  # Source left untouched.
        assert (data.input_shape, data.num_classes) == ((28, 28, 1), 10)
        assert (data.num_train, data.num_test) == (20, 10)
        mean = np.float32(arrays["train-images-idx3-ubyte"].mean(dtype=np.float64) / 255)

        def expected(images):
            return images[..., None].astype(np.float32) / np.float32(255) - mean

        x_test, y_test = _arrays(data.test)  # Test keeps the files' order.
        np.testing.assert_allclose(x_test, expected(arrays["t10k-images-idx3-ubyte"]),
                                   rtol=0, atol=1e-6)
        np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
        x, y = _arrays(data.train)  # Train is shuffled: compare as sets.
        images = np.rint((x[..., 0] + mean) * 255).astype(np.uint8)
        np.testing.assert_allclose(x, expected(images), rtol=0, atol=1e-6)
        got = _sorted_rows(images, y)
        want = _sorted_rows(arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"])
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert not np.array_equal(x, _arrays(data.train)[0])  # Reshuffled.
    assert len(os.listdir(tfds_dir / "idx_images")) == 3  # One prepared copy per folder.


def test_idx_folder_errors(tmp_path):
    _idx_folder(tmp_path / "partial", seed=0, compress=True)
    os.remove(tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ValueError, match=r"lacks t10k-labels-idx1-ubyte\[.gz\]"):
        datasets.load("mnist", data_dir=tmp_path / "partial", batch_size=4)
    _idx_folder(tmp_path / "empty", seed=0, compress=False, n_train=0)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte holds no images"):
        datasets.load("mnist", data_dir=tmp_path / "empty", batch_size=4)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION_MNIST),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist():
    data = datasets.load("fashion_mnist", data_dir=DEBIAN_FASHION_MNIST, batch_size=32,
                         test_batch_size=500)
    assert (data.num_train, data.num_test, data.num_classes) == (60000, 10000, 10)
    assert data.input_shape == (28, 28, 1)
    x, y = next(iter(data.test))
    assert x.shape == (500, 28, 28, 1) and x.dtype == tf.float32
    raw = read_idx(os.path.join(DEBIAN_FASHION_MNIST, "t10k-images-idx3-ubyte.gz"))[:500]
    labels = read_idx(os.path.join(DEBIAN_FASHION_MNIST, "t10k-labels-idx1-ubyte.gz"))[:500]
    np.testing.assert_array_equal(y, labels)
    centred = x.numpy()[..., 0] - raw / np.float32(255)  # Minus the same constant everywhere.
    np.testing.assert_allclose(centred, centred[0, 0, 0], atol=1e-6)
    assert -0.35 < centred[0, 0, 0] < -0.25  # Fashion-MNIST's mean pixel is 0.286.


# --- stock TFDS: prepared, or fail fast -------------------------------------

def _no_download(builder, **kwargs):
    raise AssertionError(f"load began to download and prepare {builder.name}")


def _tfds_scratch_folders():
    """The temporary folders TFDS makes (tmp*tfds), and the parents al_keras gives them."""
    return {p for p in os.listdir(tempfile.gettempdir())
            if p.startswith("tmp") and p.endswith("tfds") or p.startswith("al_keras_tfds_")}


@pytest.mark.parametrize("name", ["cifar10", "fashion_mnist"])
def test_unprepared_and_offline_fails_fast(name, monkeypatch, tfds_dir):
    calls = []
    monkeypatch.setattr(datasets, "can_connect", lambda *args, **kw: calls.append(args) or False)
    monkeypatch.setattr(datasets, "_download_and_prepare", _no_download)
    scratch_before = _tfds_scratch_folders()
    with pytest.raises(RuntimeError) as error:
        datasets.load(name, batch_size=32)
    # One look whether its host answers, then the refusal: no download begun.
    assert calls == [datasets.DOWNLOAD_HOSTS[name]]
    message = str(error.value)
    assert f"{name} is not prepared in {tfds_dir}" in message
    assert _tfds_scratch_folders() == scratch_before  # TFDS left none behind
    assert f"tfds build {name}" in message
    if name == "fashion_mnist":
        assert "dataset-fashion-mnist" in message and DEBIAN_FASHION_MNIST in message


def test_can_connect():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert CAN_CONNECT("127.0.0.1", port)
    assert not CAN_CONNECT("127.0.0.1", port, timeout=1)  # Closed: refused.


def test_can_connect_gives_up_at_its_timeout(monkeypatch):
    """A host that never answers: False once `timeout` has passed, while the
    connection attempt (in its thread) is still pending."""
    attempts, release, ended = [], threading.Event(), threading.Event()

    def never_answers(address, timeout=None):
        attempts.append((address, timeout))
        release.wait(60)  # Bounded: no thread outlives a broken test for long.
        ended.set()
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", never_answers)
    try:
        assert not CAN_CONNECT("192.0.2.1", 443, timeout=0.2)
        assert attempts == [(("192.0.2.1", 443), 0.2)]
        assert not ended.is_set()  # It did not wait for the attempt to end.
    finally:
        release.set()


class _FakeCifar10(tfds.image_classification.Cifar10, skip_registration=True):
    """Writes a tiny dataset in the stock cifar10 format and place."""

    name = "cifar10"

    def _split_generators(self, dl_manager):
        return {"train": self._fake(12, seed=0), "test": self._fake(5, seed=1)}

    def _fake(self, n, seed):
        for i, image in enumerate(_fake_images(n, seed, (32, 32, 3))):
            yield i, {"id": f"{seed}_{i}", "label": i % 10, "image": image}


class _FakeMnist(tfds.image_classification.MNIST, skip_registration=True):
    """Writes a tiny dataset in the stock mnist format and place."""

    name = "mnist"

    def _split_generators(self, dl_manager):
        return {"train": self._fake(12, seed=0), "test": self._fake(5, seed=1)}

    def _fake(self, n, seed):
        for i, image in enumerate(_fake_images(n, seed, (28, 28, 1))):
            yield i, {"label": i % 10, "image": image}


def _fake_images(n, seed, shape):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _prepare(builder):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def test_prepared_cifar10_is_standardized_and_augmented(tmp_path):
    _prepare(_FakeCifar10(data_dir=str(tmp_path)))
    standardized = augmentation.standardize(_fake_images(12, 0, (32, 32, 3)) / 255).numpy()
    for augment in (False, True):
        data = datasets.load("cifar10", data_dir=tmp_path, batch_size=4, augment=augment)
        assert (data.input_shape, data.num_classes) == ((32, 32, 3), 10)
        assert (data.num_train, data.num_test) == (12, 5)
        for ds in (data.train, data.test):
            x, y = _arrays(ds)
            assert x.shape[1:] == (32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
            np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0, atol=1e-4)
            np.testing.assert_allclose(x.std(axis=(1, 2, 3)), 1, atol=1e-3)
        x, _ = _arrays(data.train)
        unchanged = sum(any(np.allclose(a, b, atol=1e-4) for b in standardized) for a in x)
        assert unchanged == (0 if augment else 12)
    loads = [datasets.load("cifar10", data_dir=tmp_path, batch_size=4, augment=True, seed=5)
             for _ in range(2)]
    first = _arrays(loads[0].train)[0]
    np.testing.assert_array_equal(_arrays(loads[1].train)[0], first)  # Seeded.
    assert not np.allclose(_arrays(loads[1].train)[0], first)  # New draws each epoch.
    # A run resumed at epoch 1 draws epoch 1's augmentation again (3 batches an epoch).
    np.testing.assert_array_equal(
        np.concatenate([x for x, _ in loads[0].train_epochs(1).take(3)]),
        np.concatenate([x for x, _ in loads[1].train_epochs(0).skip(3).take(3)]))


def test_prepared_stock_mnist_is_mean_centred(tmp_path, tfds_dir):
    _prepare(_FakeMnist(data_dir=str(tfds_dir)))
    images = _fake_images(5, 1, (28, 28, 1))
    mean = np.float32(_fake_images(12, 0, (28, 28, 1)).mean(dtype=np.float64) / 255)
    for data_dir in (None, tfds_dir):
        data = datasets.load("mnist", data_dir=data_dir, batch_size=4)
        assert (data.num_train, data.num_test, data.input_shape) == (12, 5, (28, 28, 1))
        x, y = _arrays(data.test)  # Stock TFDS stores examples in hashed order.
        order = [int(np.argmin(np.abs(images / np.float32(255) - mean - a).sum(axis=(1, 2, 3))))
                 for a in x]
        assert sorted(order) == list(range(5))
        np.testing.assert_allclose(x, images[order] / np.float32(255) - mean, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(y, order)  # Example i has label i.


# --- augmentation -----------------------------------------------------------

@pytest.mark.parametrize("augment,size", [(augmentation.augment_cifar, 32),
                                          (augmentation.augment_tiny_imagenet, 64)])
def test_augmentation(augment, size):
    images = tf.random.stateless_uniform((6, size, size, 3), seed=(0, 1))
    out = augment(images, seed=(3, 4)).numpy()
    assert out.shape == (6, size, size, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-3)
    np.testing.assert_array_equal(out, augment(images, seed=(3, 4)).numpy())
    assert not np.allclose(out, augment(images, seed=(3, 5)).numpy())
    assert not np.allclose(out, augmentation.standardize(images).numpy())
    one = augment(images[0], seed=(7, 7))
    assert one.shape == (size, size, 3)
    uint8 = tf.cast(images * 255, tf.uint8)
    np.testing.assert_allclose(augment(uint8, seed=(3, 4)), augment(
        tf.cast(uint8, tf.float32) / 255, seed=(3, 4)), atol=1e-6)


# --- Tiny-ImageNet ----------------------------------------------------------

def _fake_tiny_imagenet(top):
    """2 classes (wnids.txt unsorted), 3 train JPEGs each (one grayscale),
    4 val JPEGs, a test JPEG that must be ignored; returns the val images."""
    rng = np.random.default_rng(0)

    def jpeg(path, channels=3):
        image = rng.integers(0, 256, (64, 64, channels), dtype=np.uint8)
        data = tf.io.encode_jpeg(image).numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    (top / "val" / "images").mkdir(parents=True)
    (top / "wnids.txt").write_text("n02\nn01\n")
    for wnid in ("n01", "n02"):
        for i in range(3):
            jpeg(top / "train" / wnid / "images" / f"{wnid}_{i}.JPEG",
                 channels=1 if (wnid, i) == ("n02", 0) else 3)
        (top / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    val = [(f"val_{i}.JPEG", wnid) for i, wnid in enumerate(["n02", "n01", "n01", "n02"])]
    encoded = [jpeg(top / "val" / "images" / name) for name, _ in val]
    (top / "val" / "val_annotations.txt").write_text(
        "".join(f"{name}\t{wnid}\t0\t0\t63\t63\n" for name, wnid in val))
    jpeg(top / "test" / "images" / "test_0.JPEG")
    return encoded, [int(wnid == "n02") for _, wnid in val]


def test_tiny_imagenet_from_zip_and_folder(tmp_path, tfds_dir):
    encoded, labels = _fake_tiny_imagenet(tmp_path / "extracted" / "tiny-imagenet-200")
    (tmp_path / "zipped").mkdir()
    with zipfile.ZipFile(tmp_path / "zipped" / "tiny-imagenet-200.zip", "w") as zf:
        for path in sorted((tmp_path / "extracted").rglob("*")):
            zf.write(path, path.relative_to(tmp_path / "extracted"))
    want = augmentation.standardize(
        tf.stack([tf.io.decode_jpeg(e) for e in encoded]) / 255).numpy()
    for source in ("zipped", "extracted"):
        data = datasets.load("tiny_imagenet", data_dir=tmp_path / source, batch_size=4)
        assert (data.input_shape, data.num_classes) == ((64, 64, 3), 2)
        assert (data.num_train, data.num_test) == (6, 4)
        x_test, y_test = _arrays(data.test)
        np.testing.assert_array_equal(y_test, labels)
        np.testing.assert_allclose(x_test, want, atol=1e-5)
        x, y = _arrays(data.train)
        assert x.shape == (6, 64, 64, 3) and sorted(y) == [0, 0, 0, 1, 1, 1]
    assert len(os.listdir(tfds_dir / "tiny_imagenet")) == 2  # No collision.
    data = datasets.load("tiny_imagenet", data_dir=tmp_path / "zipped", batch_size=3,
                         augment=True, seed=1)
    x, _ = _arrays(data.train)
    assert x.shape == (6, 64, 64, 3)
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0, atol=1e-4)


def test_tiny_imagenet_missing_zip_says_where(tmp_path, tfds_dir, monkeypatch):
    monkeypatch.setattr(datasets, "_download_and_prepare", _no_download)
    with pytest.raises(datasets.DatasetUnavailableError,
                       match=r"tiny-imagenet-200\.zip.*" + str(tmp_path)):
        datasets.load("tiny_imagenet", data_dir=tmp_path, batch_size=8)
    with pytest.raises(datasets.DatasetUnavailableError,
                       match=str(tfds_dir / "downloads" / "manual")):
        datasets.load("tiny_imagenet", batch_size=8)


def test_max_examples_take_the_same_first_examples_every_epoch():
    full = datasets.load("digits", batch_size=1000)
    first = np.concatenate([x for x, _ in full.train.unbatch().batch(2000)])
    data = datasets.load("digits", batch_size=8, max_train_examples=20, max_test_examples=12)
    assert (data.num_train, data.num_test) == (20, 12)
    epochs = [np.concatenate([x for x, _ in data.train]) for _ in range(2)]
    assert len(epochs[0]) == 20 and len(np.concatenate([x for x, _ in data.test])) == 12
    def as_set(a):
        return {row.tobytes() for row in a.reshape(len(a), -1)}
    assert as_set(epochs[0]) == as_set(epochs[1])
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled
    assert as_set(epochs[0]) <= as_set(first)
    with pytest.raises(ValueError, match="max_train_examples"):
        datasets.load("digits", batch_size=8, max_train_examples=-1)


def test_validation_examples_are_held_out_from_the_end_of_the_training_split():
    (x, _), _ = al_keras.data.load_digits()  # The training split, in its order.
    data = datasets.load("digits", batch_size=64, validation_examples=100)
    assert (data.num_train, data.num_validation) == (len(x) - 100, 100)
    validation = np.concatenate([v for v, _ in data.validation])
    train = np.concatenate([t for t, _ in data.train])
    np.testing.assert_array_equal(validation.reshape(100, -1), x[-100:])
    def as_set(a):
        return {row.tobytes() for row in a.reshape(len(a), -1)}
    assert len(train) == len(x) - 100 and not as_set(train) & as_set(validation)
    # max_train_examples counts from the first training example, as before.
    limited = datasets.load("digits", batch_size=64, validation_examples=100,
                            max_train_examples=300)
    assert limited.num_train == 300 and limited.num_validation == 100
    assert datasets.load("digits", batch_size=8).validation is None
    with pytest.raises(ValueError, match="leaves no training example"):
        datasets.load("digits", batch_size=8, validation_examples=len(x))
    with pytest.raises(ValueError, match="validation_examples must be an integer >= 0"):
        datasets.load("digits", batch_size=8, validation_examples=-3)
