"""A NaN / Inf local loss stops training naming the block and the step, and
the last good checkpoint stays loadable; or (on_nonfinite_loss="skip") the
updates of the bad batch are skipped and counted."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras.data import datasets
from al_keras.training import runs, train_lib
from test_configs import load_config_module

STEPS_PER_EPOCH = 45
POISONED_STEP = STEPS_PER_EPOCH + 2  # Epoch 2, batch 2.


def _model(**compile_args):
    model = al_keras.models.get("mlp", input_shape=(8, 8, 1), num_classes=10,
                                hidden_units=32, label_units=16, num_blocks=3)
    model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"], **compile_args)
    return model


@pytest.mark.parametrize("layer, named", [
    # A NaN f_2 makes s_2 NaN, which block 3 takes in the same step.
    (lambda block: block.encoder, "block 2's associated loss (assoc_loss_2) = nan, "
     "block 3's associated loss (assoc_loss_3) = nan"),
    (lambda block: block.label_decoder, "block 2's auto-encoder loss (ae_loss_2) = nan"),
], ids=["f_2", "h_2"])
def test_the_message_names_the_block_and_the_step(layer, named, digits):
    (x, y), _ = digits
    x = x.reshape(-1, 8, 8, 1)
    model = _model()
    model.fit(x[:64], y[:64], batch_size=32, verbose=0)  # Steps 1 and 2: fine.
    variable = layer(model.blocks[1]).trainable_variables[0]
    variable.assign(tf.fill(variable.shape, math.nan))
    with pytest.raises(al_keras.NonFiniteLossError) as raised:
        model.fit(x[:64], y[:64], batch_size=32, verbose=0)
    assert str(raised.value) == (
        f"Non-finite loss at training step 3 (epoch 1, batch 1): {named}. Training "
        "stopped; the model's weights may now hold NaN. Lower the learning rate or "
        "check the data; on_nonfinite_loss='skip' skips such batches instead.")


@pytest.mark.slow
def test_skip_leaves_the_weights_finite_and_counts_the_batch(digits):
    (x, y), _ = digits
    x = x[:256].reshape(-1, 8, 8, 1).copy()
    x[40] = np.nan  # In batch 2 of 8.
    model = _model(on_nonfinite_loss="skip", jit_compile=True)
    history = model.fit(x, y[:256], batch_size=32, epochs=2, shuffle=False, verbose=0,
                        check_data=False)
    # Each block skipped its associated update of the NaN batch, once an epoch.
    assert history.history["skipped_updates"] == [3.0, 3.0]
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert [int(o.iterations) for o in model.assoc_optimizers] == [14] * 3  # 16 - 2
    with pytest.raises(ValueError, match="BPModel supports on_nonfinite_loss='stop' only"):
        al_keras.models.get("mlp", input_shape=(64,), num_classes=10, method="bp",
                            hidden_units=8).compile(on_nonfinite_loss="skip")


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", [True, False], ids=["pipelined", "sequential"])
def test_skip_on_blocks_placed_on_devices(pipeline, digits, cpu_devices):
    (x, y), _ = digits
    x = x[:256].reshape(-1, 8, 8, 1).copy()
    x[40] = np.nan  # In batch 2 of 8.
    strategy = al_keras.distribute.BlockParallel(cpu_devices[:3], placement=[0, 1, 2],
                                                 pipeline=pipeline)
    with strategy.scope():
        model = _model(on_nonfinite_loss="skip")
    history = model.fit(x, y[:256], batch_size=32, epochs=2, shuffle=False, verbose=0,
                        check_data=False)
    assert history.history["skipped_updates"] == [3.0, 3.0]
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert [int(o.iterations) for o in model.assoc_optimizers] == [14] * 3
    assert [int(o.iterations) for o in model.ae_optimizers] == [16] * 3
    if pipeline:  # The skipped batch still passed through every block.
        assert strategy.examples_trained() == [512] * 3


@pytest.fixture
def poisoned_digits(monkeypatch):
    """`datasets.load` whose training features are NaN at `POISONED_STEP`."""
    load = datasets.load

    def poisoned_load(*args, **kwargs):
        data = load(*args, **kwargs)
        train_epochs = data.train_epochs

        def poisoned(first_epoch=0):
            return train_epochs(first_epoch).enumerate(
                start=first_epoch * STEPS_PER_EPOCH + 1).map(
                lambda step, batch: (tf.where(step == POISONED_STEP, math.nan, batch[0]),
                                     batch[1]))

        data.train_epochs = poisoned
        return data

    monkeypatch.setattr(datasets, "load", poisoned_load)


def _config(**changes):
    config = load_config_module("digits").get_config()
    config.update({"epochs": 3, "export": False, "eval_exits": False,
                   "check_data": False, **changes})
    return config


@pytest.mark.slow
def test_train_stops_and_the_last_good_checkpoint_loads(poisoned_digits, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(al_keras.NonFiniteLossError) as raised:
        train_lib.train_and_evaluate(_config(), str(workdir), verbose=0)
    checkpoint = workdir / "checkpoints" / "epoch_0001.keras"
    assert str(raised.value).startswith(
        f"Non-finite loss at training step {POISONED_STEP} (epoch 2, batch 2): block 1's "
        "associated loss (assoc_loss_1) = nan, block 2's associated loss (assoc_loss_2) "
        "= nan. Training stopped;")
    assert str(raised.value).endswith(
        f"The last good checkpoint is {checkpoint} (epoch 1); rerunning resumes from it.")
    assert sorted(os.listdir(workdir / "checkpoints")) == ["epoch_0001.keras"]
    model = keras.models.load_model(checkpoint)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert int(model.optimizer.iterations) == STEPS_PER_EPOCH
    assert [r["epoch"] for r in runs.read_metrics(str(workdir))] == [0]


@pytest.mark.slow
def test_train_with_data_checks_names_the_data_instead(poisoned_digits, tmp_path):
    with pytest.raises(al_keras.InputDataError, match=(
            r"^fit: input features hold NaN or Inf \(2048 of them\); clean the data")):
        train_lib.train_and_evaluate(_config(check_data=True), str(tmp_path / "run"),
                                     verbose=0)


@pytest.mark.slow
def test_train_skipping_goes_on_and_logs_the_skips(poisoned_digits, tmp_path):
    workdir = tmp_path / "run"
    results = train_lib.train_and_evaluate(
        _config(on_nonfinite_loss="skip"), str(workdir), verbose=0)
    rows = runs.read_metrics(str(workdir))
    assert [r["skipped_updates"] for r in rows] == [0.0, 2.0, 0.0]  # Both blocks'.
    assert all(math.isfinite(r["loss"]) for r in rows)
    # After 3 epochs the deep exit is still learning (0.42); the first is not.
    assert max(results["exit_test_accuracy"]) > 0.85
