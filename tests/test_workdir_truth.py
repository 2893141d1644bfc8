"""A `train.py` run is right or refused (issue 22): the first run on freshly
prepared data is the rerun, a side file that disagrees with the checkpoint is
refused, no export is skipped silently, a run that fails early leaves nothing
behind, and the Ray stages are checked with the rest of the config."""

import os
import re

import pytest

from al_keras.training import config_lib, train_lib
from test_text import _write_data_noun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name, arg=None, **overrides):
    config = config_lib.load_config_module(
        os.path.join(ROOT, "configs", f"{name}.py")).get_config(arg)
    for key, value in overrides.items():
        config[key] = value
    return config


def _wordnet(source, **overrides):
    return _config("wordnet", "model=transformer,smoke", data_dir=str(source), epochs=1,
                   export=False, eval_exits=False, **overrides)


def _files(folder):
    """{relative path: bytes} of every file under `folder`."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def _data_noun_copy(folder, per_class=40):
    folder.mkdir()
    _write_data_noun(folder, per_class=per_class)
    return folder


@pytest.mark.slow
def test_first_runs_repeat_byte_for_byte_and_the_checkpoint_is_trusted_over_its_vocabulary(
        tmp_path, monkeypatch):
    """Preparing a data set (TFDS' first build of it) drew random numbers of
    the run's: a fresh run on a fresh copy, another, and a rerun on the
    prepared data now write the same metrics.csv.  Then a shuffled or
    truncated `vocabulary.txt` is refused on resume with one line naming it,
    nothing changed, and the restored file resumes."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    first, second = _data_noun_copy(tmp_path / "a"), _data_noun_copy(tmp_path / "b")
    for source, workdir in ((first, "fresh_a"), (second, "fresh_b"), (first, "rerun_a")):
        results = train_lib.train_and_evaluate(_wordnet(source),
                                               str(tmp_path / workdir), verbose=0)
    metrics = [(tmp_path / w / "metrics.csv").read_bytes()
               for w in ("fresh_a", "fresh_b", "rerun_a")]
    assert metrics[0] == metrics[1] == metrics[2]

    workdir = tmp_path / "rerun_a"
    path = workdir / "vocabulary.txt"
    words = path.read_text()
    lines = words.splitlines(keepends=True)
    checkpoint = workdir / "checkpoints" / "epoch_0001.keras"
    for broken in ("".join(reversed(lines)), "".join(lines[:5])):
        path.write_text(broken)
        before = _files(workdir)
        with pytest.raises(train_lib.WorkdirError, match=(
                f"^{re.escape(str(path))} is not the vocabulary of checkpoint "
                f"{re.escape(str(checkpoint))}: .* Restore the file .*nothing was "
                "resumed or changed\\.$")):
            train_lib.train_and_evaluate(_wordnet(first), str(workdir), verbose=0)
        assert _files(workdir) == before
    path.write_text(words)  # Restored: the workdir resumes (here: is evaluated) again.
    again = train_lib.train_and_evaluate(_wordnet(first), str(workdir), verbose=0)
    assert again["test_accuracy"] == results["test_accuracy"]


def test_a_saved_model_that_is_no_saved_model_is_refused_before_anything(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "saved_model").write_text("not an export")
    with pytest.raises(train_lib.WorkdirError, match=(
            f"^{re.escape(str(workdir / 'saved_model'))} exists but is no SavedModel")):
        train_lib.train_and_evaluate(_config("digits"), str(workdir), verbose=0)
    assert _files(workdir) == {"saved_model": b"not an export"}


@pytest.mark.slow
def test_an_existing_export_is_kept_and_said(tmp_path, capsys):
    config = _config("digits", epochs=1, max_train_examples=64, eval_exits=False)
    workdir = tmp_path / "run"
    train_lib.train_and_evaluate(config, str(workdir), verbose=0)
    export = _files(workdir / "saved_model")
    assert "saved_model.pb" in export
    capsys.readouterr()
    train_lib.train_and_evaluate(config, str(workdir), verbose=0)
    assert (f"Export kept: {workdir / 'saved_model'} (written by an earlier run of this "
            "workdir).") in capsys.readouterr().out
    assert _files(workdir / "saved_model") == export


def test_a_run_that_fails_before_training_leaves_no_workdir(tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(config_lib.ConfigError, match=(
            r"^config\.validation_examples=5000 leaves no training example: the training "
            r"split has 1438; hold out fewer\.$")):
        train_lib.train_and_evaluate(_config("digits", validation_examples=5000),
                                     str(workdir), verbose=0)
    assert not workdir.exists()


def test_a_failed_preparation_leaves_no_folder_in_the_tfds_dir(tmp_path, monkeypatch):
    from al_keras.data import datasets

    tfds_dir = tmp_path / "tfds"
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    source = _data_noun_copy(tmp_path / "wordnet", per_class=3)
    with open(source / "data.noun", "a") as f:
        f.write("00009999 44 n 01 word 0 000 | a gloss\n")
    with pytest.raises(datasets.DataFileError, match="line 12 is malformed"):
        train_lib.train_and_evaluate(_wordnet(source), str(tmp_path / "run"), verbose=0)
    assert not (tmp_path / "run").exists()
    assert [p for p, _, _ in os.walk(tfds_dir)][1:] == []  # Nothing under it.


@pytest.mark.parametrize("overrides, message", [
    ({"num_stages": 3}, "config.num_stages=3 is more stages than the model's 2 blocks (a "
                        "stage holds at least one); give num_stages <= 2."),
    ({"placement": "0,1,1"}, "config.placement [0, 1, 1]: give one stage index per block "
                             "(2), non-decreasing, using every stage 0..1, or 'auto'."),
    ({"placement": "1,0"}, "config.placement [1, 0]: give one stage index per block (2), "
                           "non-decreasing, using every stage 0..1, or 'auto'."),
    ({"num_stages": 2, "cpus_per_stage": 64.0},
     "config.cpus_per_stage=64.0 is invalid: 2 stages of 64 CPUs need 128 CPUs, but this "
     "machine (a local Ray) has {cpus}; lower num_stages or cpus_per_stage."),
    ({"num_stages": 1, "gpus_per_stage": 1000.0},
     "config.gpus_per_stage=1000.0 is invalid: 1 stages of 1000 GPUs need 1000 GPUs, but "
     "this machine (a local Ray) has 0; lower num_stages or gpus_per_stage."),
    ({"cpus_per_stage": float("inf")}, "config.cpus_per_stage=inf is invalid: must be >= 0 "
                                       "and finite (0: automatic)."),
])
def test_ray_stages_are_checked_with_the_config_before_ray_starts(overrides, message):
    """Not labelled `config.model_options` and not after Ray and the data
    started: `validate` is pure (no Ray is imported for it)."""
    import sys

    config = _config("digits", distribute="ray", **overrides)
    with pytest.raises(config_lib.ConfigError) as raised:
        config_lib.validate(config)
    assert str(raised.value) == message.format(cpus=os.cpu_count())
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


@pytest.mark.parametrize("key, value, allowed", [
    ("seed", -1, "must be in [0, 2**32) (numpy's and TensorFlow's seeds)"),
    ("seed", 2**32, "must be in [0, 2**32) (numpy's and TensorFlow's seeds)"),
    ("lr", float("inf"), "must be > 0 and finite"),
    ("exit_drop_bound_z", float("inf"), "must be >= 0 and finite"),
    ("gpus_per_stage", float("nan"), "must be >= 0 and finite"),
])
def test_values_numpy_or_training_cannot_take_are_refused(key, value, allowed):
    with pytest.raises(config_lib.ConfigError,
                       match=f"^config.{key}={re.escape(repr(value))} is invalid: "
                             f"{re.escape(allowed)}.$"):
        config_lib.validate(_config("digits", **{key: value}))
