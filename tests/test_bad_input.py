"""Bad input gets one clear line naming the problem, and loses nothing.

Each case here is a row of the table "Bad input and what it gets" in docs/reliability.md.
"""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras.training import train_lib
from test_datasets import _idx_folder

# (train.py runs through conftest's `train_py`: its `refusal` fails the test on a
# traceback, and on a run that hangs, at the subprocess timeout.)


@pytest.mark.parametrize("args, message", [
    (["--config.learning_rate=0.1"], "train.py: unknown config key 'learning_rate' in "
     "'--config.learning_rate=0.1'; known keys: augment, batch_size, "),
    (["--config.model_options.widht=3"], "unknown model option 'widht'"),
    (["--config.seed=1.5"], "train.py: --config.seed=1.5: config.seed must be int "
     "(random seed), got '1.5'."),
    (["--config.model_options.hidden_units=wide"], "config.model_options.hidden_units "
     "must be int (default 256), got 'wide'."),
    (["--config.lr=0"], "train.py: config.lr=0.0 is invalid: must be > 0 and finite."),
    (["--config.lr=-1e-3"], "train.py: config.lr=-0.001 is invalid: must be > 0 and finite."),
    (["--config.batch_size=0"], "train.py: config.batch_size=0 is invalid: must be >= 1."),
    (["--config.epochs=-1"], "train.py: config.epochs=-1 is invalid: must be >= 0."),
    (["--config.dataset=imagenet"], "train.py: config.dataset='imagenet' is invalid: one "
     "of ('digits', 'mnist', 'fashion_mnist', 'cifar10', 'cifar100', 'tiny_imagenet', "
     "'wordnet', 'ag_news', 'imdb', 'sst2', 'dbpedia')."),
    (["--config.model=resnet50"], "train.py: config.model='resnet50' is invalid: one of "
     "('mlp', 'cnn', 'vgg', 'resnet20', 'resnet32', 'lstm', 'transformer')."),
    (["--config=configs/wordnet.py", "--config.model=cnn"], "train.py: config.model='cnn' "
     "cannot read config.dataset='wordnet': text sets (wordnet, ag_news, imdb, sst2, "
     "dbpedia) take the text models (lstm, transformer), image sets the others."),
    (["--config=configs/wordnet.py:smoke", "--config.data_dir=/"], "train.py: data_dir '/' "
     "holds no data.noun: give the folder of WordNet 3.0's data files (e.g. "
     "/usr/share/wordnet)."),
    (["--config=configs/wordnet.py:smoke", "--config.sequence_length=0"],
     "train.py: config.sequence_length=0 is invalid: must be >= 1."),
    (["--config.method=dfa"], "train.py: config.method='dfa' is invalid: one of ('al', 'bp')."),
    (["--config=configs/digits.py:method=dfa"], "train.py: "
     "--config=configs/digits.py:method=dfa: Unknown method 'dfa'; expected one of "
     "('al', 'bp')."),
    (["--config=configs/digits.py:model=vgg"], "configs/digits.py has models ['cnn', "
     "'mlp'], got 'vgg'."),
    (["--config=configs/digit.py"], "train.py: --config=configs/digit.py: no config "
     "file 'configs/digit.py'."),
    (["--config.distribute=ray", "--config.num_stages=3"], "train.py: config.num_stages=3 "
     "is more stages than the model's 2 blocks (a stage holds at least one); give "
     "num_stages <= 2."),
    (["--config.model_options.num_blocks=0"], "train.py: config.model_options: Option "
     "num_blocks=0 is invalid: an AL model needs num_blocks >= 1."),
    (["--config.distribute=blocks", "--config.placement=0,5"], "placement [0, 5] names "
     "devices [5], but there are 2 devices"),
    (["--config.distribute=multi_worker"], "needs the TF_CONFIG environment variable"),
    (["--config=configs/digits.py:method=bp", "--config.on_nonfinite_loss=skip"],
     "config.on_nonfinite_loss='skip' is invalid: 'skip' skips a block's update; with "
     "method='bp' use 'stop'."),
], ids=lambda v: v if isinstance(v, str) and v.startswith("--") else None)
@pytest.mark.slow
def test_train_py_refuses_a_bad_config_with_one_line(args, message, tmp_path, train_py):
    status, last_line = train_py.refusal(f"--workdir={tmp_path / 'run'}", *args)
    assert status == 1
    assert message in last_line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_py_says_how_to_get_data_it_cannot_reach_offline(tmp_path, train_py):
    # The TFDS data dir is empty and CIFAR's host cannot be reached here (CI
    # and this machine are offline; a connected machine would download).
    if al_keras.data.datasets.can_connect("www.cs.toronto.edu", 443):
        pytest.skip("online: cifar10 would be downloaded")
    status, last_line = train_py.refusal(
        f"--workdir={tmp_path / 'run'}", "--config=configs/cifar10.py:smoke",
        env={"TFDS_DATA_DIR": str(tmp_path / "tfds")})
    assert status == 1
    assert last_line.startswith(
        f"train.py: cifar10 is not prepared in {tmp_path / 'tfds'} and its download "
        "host www.cs.toronto.edu cannot be reached. To provide it, prepare it on a "
        "connected machine with `tfds build cifar10 --data_dir=DIR`")
    # No config.json is left to refuse the next command, nor an empty workdir
    # for `report` to misread.
    assert not (tmp_path / "run").exists()


def _missing_folder(tmp_path):
    folder = tmp_path / "nonexistent"
    return folder, (f"train.py: data_dir '{folder}' does not exist: give the folder that "
                    "holds fashion_mnist's files (config.data_dir), or leave it empty to "
                    "use TFDS.")


def _truncated_file(tmp_path):
    folder = tmp_path / "idx"
    _idx_folder(folder, seed=0, compress=True, n_train=200)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:2000])  # Cut short, as a broken copy.
    return folder, (f"train.py: {images} is truncated (Compressed file ended before the "
                    "end-of-stream marker was reached); replace it with a complete copy.")


@pytest.mark.slow
@pytest.mark.parametrize("make_data_dir", [_missing_folder, _truncated_file])
def test_train_py_names_a_bad_data_dir_or_file(make_data_dir, tmp_path, train_py):
    data_dir, message = make_data_dir(tmp_path)
    status, last_line = train_py.refusal(
        f"--workdir={tmp_path / 'run'}", "--config=configs/fashion_mnist.py",
        f"--config.data_dir={data_dir}", env={"TFDS_DATA_DIR": str(tmp_path / "tfds")})
    assert status == 1
    assert last_line == message
    assert not (tmp_path / "run").exists()  # No empty workdir, no empty TFDS folder.
    assert [p for p, _, _ in os.walk(tmp_path / "tfds")][1:] == []


@pytest.mark.slow
def test_train_py_refuses_a_workdir_it_cannot_write(tmp_path, train_py):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    status, last_line = train_py.refusal(f"--workdir={blocker / 'run'}")
    assert status == 1
    assert last_line.startswith(f"train.py: workdir '{blocker / 'run'}' cannot be "
                                "written: [Errno 20] Not a directory")
    assert blocker.read_text() == "not a folder"


# ------------------------------------------------------------- checkpoints
# With conftest's `digits_config`: no export, no per-exit evaluation.
_QUICK = {"export": False, "eval_exits": False}


def _checkpoint(path, hidden_units=256):
    """A real `train.py`-style checkpoint of the digits model (untrained)."""
    model = al_keras.models.get("mlp", input_shape=(8, 8, 1), num_classes=10,
                                hidden_units=hidden_units, label_units=128)
    model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def test_a_corrupted_checkpoint_is_reported_and_kept(tmp_path, digits_config):
    good = _checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0001.keras")
    bad = tmp_path / "run" / "checkpoints" / "epoch_0002.keras"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # A truncated write.
    with pytest.raises(train_lib.CheckpointError) as raised:
        train_lib.train_and_evaluate(digits_config(epochs=3, **_QUICK),
                                     str(tmp_path / "run"), verbose=0)
    assert str(raised.value).startswith(f"Checkpoint {bad} cannot be loaded (")
    assert str(raised.value).endswith(
        "; it is corrupted or was written by an incompatible version. Move it away to "
        f"resume from {good}, or choose another workdir.")
    assert bad.read_bytes() == data[: len(data) // 2]  # Neither removed nor rewritten.
    assert good.read_bytes() == data
    # Refused before training: no epoch was trained over them, none saved.
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == [
        "epoch_0001.keras", "epoch_0002.keras"]


def test_a_checkpoint_of_another_model_is_reported_and_kept(tmp_path, digits_config):
    other = _checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0001.keras",
                        hidden_units=32)
    data = other.read_bytes()
    with pytest.raises(train_lib.CheckpointError, match=(
            f"^Checkpoint {other} holds another model than this run's config makes: "
            "ALModel with 245,194 parameters in 20 weights, against ALModel with "
            "611,210 parameters in 20 weights. Move it away to start "
            "over, or choose another workdir.$")):
        train_lib.train_and_evaluate(digits_config(epochs=2, **_QUICK),
                                     str(tmp_path / "run"), verbose=0)
    assert other.read_bytes() == data


@pytest.mark.slow
def test_a_run_of_an_older_config_without_new_keys_resumes(tmp_path, digits_config):
    workdir = tmp_path / "run"
    config = digits_config(epochs=1, **_QUICK)
    train_lib.train_and_evaluate(config, str(workdir), verbose=0)
    saved = (workdir / "config.json").read_text()
    older = saved.replace('  "deterministic": false,\n', "")
    assert older != saved
    (workdir / "config.json").write_text(older)  # As written before the key existed.
    train_lib.train_and_evaluate(config, str(workdir), verbose=0)
    assert (workdir / "config.json").read_text() == saved
    (workdir / "config.json").write_text(older)
    with pytest.raises(al_keras.training.config_lib.ConfigError, match=(
            r"holds a run of another config \(differing keys: \['deterministic'\]\)")):
        train_lib.train_and_evaluate(digits_config(epochs=1, deterministic=True, **_QUICK),
                                     str(workdir), verbose=0)


# ------------------------------------------------------- fit/evaluate/predict
@pytest.fixture(params=["al", "bp"])
def model(request):
    model = al_keras.models.get("mlp", input_shape=(8, 8, 1), num_classes=10,
                                method=request.param, hidden_units=32, label_units=16)
    model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"], jit_compile=True)
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return (rng.random((64, 8, 8, 1), dtype=np.float32),
            rng.integers(0, 10, 64).astype("int32"))


def _batches(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _raises(message, fn):
    with pytest.raises(al_keras.InputDataError) as raised:
        fn()
    assert str(raised.value) == message


def test_inputs_of_the_wrong_shape(model, data):
    x, y = data
    expected = f"model '{model.name}' takes inputs of shape (batch, 8, 8, 1), got "
    weights = [w.copy() for w in model.get_weights()]
    _raises("fit: " + expected + "(batch, 64). Reshape the data, or build a model "
            "for this shape.", lambda: model.fit(x.reshape(64, 64), y, verbose=0))
    _raises("fit: " + expected + "(batch, 64). Reshape the data, or build a model "
            "for this shape.", lambda: model.fit(_batches(x.reshape(64, 64), y), verbose=0))
    _raises("evaluate: " + expected + "(batch, 8, 8, 2). Reshape the data, or build a "
            "model for this shape.",
            lambda: model.evaluate(np.concatenate([x, x], -1), y, verbose=0))
    _raises("predict: " + expected + "(batch, 8, 8). Reshape the data, or build a "
            "model for this shape.", lambda: model.predict(x[..., 0], verbose=0))
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)  # Nothing trained.
    model.fit(x, y, verbose=0)  # The model still works.


def test_labels_outside_the_classes(model, data):
    x, y = data
    message = "labels must be class ids in [0, 10) (num_classes=10), found {}."
    _raises("fit: " + message.format(12), lambda: model.fit(x, np.full(64, 12), verbose=0))
    _raises("evaluate: " + message.format(-1),
            lambda: model.evaluate(x, np.full(64, -1), verbose=0))
    # In a dataset: checked batch by batch in the input pipeline, also under
    # XLA (jit_compile=True), where assertions in the step are dropped.
    labels = np.arange(64) % 12
    _raises("fit: " + message.format(10), lambda: model.fit(_batches(x, labels), verbose=0))


def test_float_labels_where_class_ids_are_expected(model, data):
    x, _ = data
    fractions = np.full(64, 0.25, np.float32)
    message = ("labels must be class ids in [0, 10), found the float 0.25. Give integer "
               "ids, or one-hot rows (batch, 10).")
    _raises("fit: " + message, lambda: model.fit(x, fractions, verbose=0))
    _raises("fit: " + message, lambda: model.fit(_batches(x, fractions), verbose=0))
    _raises("fit: labels of shape (batch, 3) are neither class ids (batch,) / (batch, 1) "
            "nor one-hot rows (batch, 10).",
            lambda: model.fit(x, np.zeros((64, 3), np.float32), verbose=0))
    model.fit(x, np.arange(64, dtype=np.float32) % 10, verbose=0)  # Whole floats: ids.


def test_nan_or_inf_in_the_features(model, data):
    x, y = data
    x = x.copy()
    x[5, 0, 0, 0], x[40, 1, 1, 0] = np.nan, np.inf
    message = ("input features hold NaN or Inf (2 of them); clean the data, or pass "
               "check_data=False to skip this check.")
    _raises("fit: " + message, lambda: model.fit(x, y, verbose=0))
    _raises("fit (validation_data): " + message,
            lambda: model.fit(x[:1] * 0, y[:1], validation_data=(x, y), verbose=0))
    _raises("predict: " + message, lambda: model.predict(x, verbose=0))
    _raises("fit: " + message.replace("2 of them", "1 of them"),
            lambda: model.fit(_batches(x, y), verbose=0))  # batch 1 holds one
    # The check can be turned off: then the loss turns NaN, which stops fit.
    with pytest.raises(al_keras.NonFiniteLossError, match="^Non-finite loss at "
                       "training step 1 \\(epoch 1, batch 1\\)"):
        model.fit(_batches(x, y), verbose=0, check_data=False)


def test_empty_data(model, data):
    x, y = data
    _raises("fit: the data holds no examples.", lambda: model.fit(x[:0], y[:0], verbose=0))
    _raises("fit: the data holds no examples.",
            lambda: model.fit(_batches(x, y).take(0), verbose=0))
    _raises("evaluate: the data holds no examples.",
            lambda: model.evaluate(x[:0], y[:0], verbose=0))


def test_an_existing_export_directory_is_replaced_only_when_asked(model, data, tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=(
            f"^Export directory '{target}' already exists; pass overwrite=True to "
            "replace it, or choose another path.$")):
        model.export(str(target))
    assert (target / "keep.txt").read_text() == "mine"
    model.export(str(target), overwrite=True)
    assert (target / "saved_model.pb").exists() and not (target / "keep.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["export"]  # No partial folder left.
    shutil.rmtree(target)
