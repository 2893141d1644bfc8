"""Every epoch trains each of its batches exactly once, for any steps_per_execution.

Keras 3.15's fit loop makes ceil(steps / steps_per_execution) calls of
`steps_per_execution` batches an epoch; fed an endless stream and
`steps_per_epoch` (as `train.py` feeds it), the last call of an epoch used to
train the first batches of the next one (45 batches, steps_per_execution=8:
48 steps).  Here every engine (one process, BlockParallel pipelined, RayPipeline)
makes exactly `steps_per_epoch` optimizer steps an epoch and ends where
steps_per_execution=1 ends.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras import distribute

BATCH, BATCHES, FEATURES, CLASSES = 8, 45, 6, 3  # An epoch of 45 batches.
EPOCHS = 2
SPES = (1, 7, 8, 1000)


def _examples():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * BATCHES, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, size=BATCH * BATCHES).astype("int32")
    return x, y


def _epoch_stream(first_epoch=0):
    """Epoch after epoch, each a permutation that depends on its number only
    (as `al_keras.data` `train_epochs`): an endless dataset."""
    x, y = _examples()

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(x)), seed=tf.stack([tf.constant(7, tf.int64), e]))
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(x, order), tf.gather(y, order))).batch(BATCH)

    return tf.data.Dataset.counter(first_epoch).flat_map(epoch)


def _model(method="al", strategy=None):
    keras.utils.set_random_seed(3)
    options = dict(input_shape=(FEATURES,), num_classes=CLASSES, hidden_units=8,
                   label_units=4, method=method)
    if method == "al":
        options["num_blocks"] = 2
    model = al_keras.models.get("mlp", **options)
    if strategy is not None:
        with strategy.scope():
            placed = al_keras.models.get("mlp", **options)
        placed.set_weights(model.get_weights())
        model = placed
    return model


def _compile(model, spe, jit_compile=False):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=spe,
                  jit_compile=jit_compile)


def _iterations(model):
    """Every optimizer's step count (with an ALModel's block optimizers)."""
    optimizers = [model.optimizer] + list(getattr(model, "assoc_optimizers", [])) + list(
        getattr(model, "ae_optimizers", []))
    return [int(o.iterations.numpy()) for o in optimizers]


def _weights(model):
    return [w.numpy() for w in model.weights]


class _Batches(keras.callbacks.Callback):
    """The last batch index each epoch reports to the callbacks."""

    def on_train_begin(self, logs=None):
        self.last = []

    def on_epoch_begin(self, epoch, logs=None):
        self.last.append(None)

    def on_train_batch_end(self, batch, logs=None):
        self.last[-1] = batch


def _fit_stream(model, spe, jit_compile=False):
    """2 epochs fed as train_lib feeds them: the endless stream and
    steps_per_epoch; returns the step counts, weights and last batch indices."""
    _compile(model, spe, jit_compile)
    batches = _Batches()
    model.fit(_epoch_stream(), epochs=EPOCHS, steps_per_epoch=BATCHES, verbose=0,
              callbacks=[batches])
    return _iterations(model), _weights(model), batches.last


def _assert_same_weights(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-5)


ALL_STEPS = [EPOCHS * BATCHES] * 5  # model.optimizer, 2 assoc and 2 ae optimizers


@pytest.fixture(scope="module")
def one_process():
    """Per steps_per_execution: (iterations, weights, last batches) of an
    ALModel trained 2 epochs in this process; "train_on_batch": the step
    counts after one more `train_on_batch` of the steps_per_execution=8 model."""
    results = {}
    for spe in SPES:
        model = _model()
        results[spe] = _fit_stream(model, spe)
        if spe == 8:
            x, y = _examples()
            model.train_on_batch(x[:BATCH], y[:BATCH])
            results["train_on_batch"] = _iterations(model)
    return results


@pytest.mark.parametrize("spe", SPES)
def test_al_model_trains_exactly_steps_per_epoch(one_process, spe):
    iterations, weights, last_batches = one_process[spe]
    assert iterations == ALL_STEPS
    _assert_same_weights(weights, one_process[1][1])
    # The callbacks (progress bar, checkpoints) see the epoch's batches.
    assert last_batches == [BATCHES - 1] * EPOCHS


def test_train_on_batch_trains_one_batch(one_process):
    assert one_process["train_on_batch"] == [EPOCHS * BATCHES + 1] * 5


@pytest.mark.slow
def test_xla_calls_of_any_length_share_one_trace(one_process):
    model = _model()
    iterations, weights, _ = _fit_stream(model, 8, jit_compile=True)
    assert model.jit_compile is True
    assert iterations == ALL_STEPS
    # The calls of 8 steps and each epoch's last, of 5, run one traced loop.
    assert model.train_function.multi_step.experimental_get_tracing_count() == 1
    _assert_same_weights(weights, one_process[1][1])


@pytest.mark.slow
def test_bp_model_trains_exactly_steps_per_epoch():
    one, one_weights, _ = _fit_stream(_model("bp"), 1)
    seven, seven_weights, _ = _fit_stream(_model("bp"), 7)
    assert one == seven == [EPOCHS * BATCHES]
    _assert_same_weights(seven_weights, one_weights)


@pytest.mark.slow
def test_pipelined_block_parallel_trains_exactly_steps_per_epoch(one_process, cpu_devices):
    """Drained after each epoch's last call: every block's optimizer makes
    90 steps, and the weights are those of the sequential model."""
    strategy = distribute.BlockParallel(cpu_devices[:2], placement=[0, 1],
                                        jit_compile=False, predict=False)
    model = _model(strategy=strategy)
    with strategy.scope():
        iterations, weights, last_batches = _fit_stream(model, 8)
    assert iterations == ALL_STEPS
    assert last_batches == [BATCHES - 1] * EPOCHS
    _assert_same_weights(weights, one_process[1][1])


@pytest.mark.slow
def test_finite_data_without_steps_per_epoch_is_trained_once():
    """No steps_per_epoch: each epoch reads the data to its end, once
    (arrays: of known length; a filtered dataset: of unknown length)."""
    x, y = _examples()
    fits = {"arrays": dict(x=x, y=y, batch_size=BATCH, shuffle=False),
            "unknown_length": dict(x=tf.data.Dataset.from_tensor_slices(
                (x, y)).batch(BATCH).filter(lambda *_: True))}
    results = {}
    for name, spe in (("unknown_length", 1), ("unknown_length", 8), ("arrays", 8)):
        model = _model()
        _compile(model, spe)
        batches = _Batches()
        model.fit(**fits[name], epochs=EPOCHS, verbose=0, callbacks=[batches])
        results[name, spe] = (_iterations(model), _weights(model), batches.last)
    # (Before, the call that found the data's end still counted a step in
    # each block optimizer with steps_per_execution=1: 92, not 90.)
    expected = results["unknown_length", 1][1]
    for (name, spe), (iterations, weights, _) in results.items():
        assert iterations == ALL_STEPS, (name, spe)
        _assert_same_weights(weights, expected)
    assert results["arrays", 8][2] == [BATCHES - 1] * EPOCHS


def test_finite_data_of_steps_per_epoch_times_epochs_batches_lasts_every_epoch():
    """Data of exactly steps_per_epoch * epochs batches, of known length (what
    Keras asks for): every epoch trains its 45 batches, none is cut short."""
    x, y = _examples()
    data = tf.data.Dataset.from_tensor_slices((np.tile(x, (3, 1)), np.tile(y, 3)))
    model = _model("bp")
    _compile(model, 8)
    batches = _Batches()
    model.fit(data.batch(BATCH), epochs=3, steps_per_epoch=BATCHES, verbose=0,
              callbacks=[batches])
    assert _iterations(model) == [3 * BATCHES]
    assert batches.last == [BATCHES - 1] * 3


@pytest.mark.slow
def test_ray_pipeline_agrees_with_one_process(one_process):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    try:
        strategy = distribute.RayPipeline(num_stages=2, jit_compile=False)
        model = _model(strategy=strategy)
        initial = model.get_weights()
        for spe in SPES:  # One model: its stages are started once.
            model.set_weights(initial)
            with strategy.scope():
                iterations, weights, last_batches = _fit_stream(model, spe)
            assert iterations == ALL_STEPS, spe
            assert last_batches == [BATCHES - 1] * EPOCHS, spe
            _assert_same_weights(weights, one_process[1][1])
        strategy.shutdown()
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["al", "bp"])
def test_evaluate_predict_and_validation_read_exactly_steps_batches(method):
    """Keras' evaluate / predict read `steps_per_execution` batches a call
    past `steps` too: predict(steps=45) of an endless dataset, 8 a call,
    returned 48 batches' rows.  Now `steps` batches, as for finite data."""
    x, y = _examples()
    model = _model(method)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  steps_per_execution=8)
    finite = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    endless = finite.repeat()
    rows = model.predict(endless.map(lambda a, b: a), steps=BATCHES, verbose=0)
    assert rows.shape == (BATCH * BATCHES, CLASSES)
    np.testing.assert_allclose(rows, model.predict(x, batch_size=BATCH, verbose=0), atol=1e-6)
    expected = model.evaluate(finite, verbose=0, return_dict=True)
    assert model.evaluate(endless, steps=BATCHES, verbose=0, return_dict=True) == expected
    history = model.fit(finite.take(1), validation_data=endless, validation_steps=BATCHES,
                        verbose=0)
    after = model.evaluate(finite, verbose=0, return_dict=True)
    assert history.history["val_loss"][-1] == pytest.approx(after["loss"], abs=1e-6)
