"""The Python API's entry points refuse bad input in one line, as `fit` does.

`al_keras.exits.calibrate` / `evaluate_at` / `exit_outputs` and
`ALModel.evaluate_exits` check their data with fit's checks (one checker,
`input_checks.labelled_batches`) and take arrays `(x, y)`; raw strings point
to the model's preprocessor; `fit` / `evaluate` / `predict` refuse bad
sample weights, class weights, batch sizes and validation data before Keras
sees them; `associate` and `models.get` refuse bad arguments before building.
Each refusal leaves the model as it was.  Rows of docs/reliability.md's
table "Bad input and what it gets".
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import al_keras
from al_keras.core import early_exit

DROP = ("max_accuracy_drop must be a number in [0, 1] (a fraction of accuracy: 0.005 is "
        "half a point), got {}.")
Z = ("drop_bound_z must be a number >= 0, not inf (standard errors added to the accuracy "
     "drop; 1.645: one-sided 95%), got {}.")
FLOAT_LABELS = ("labels must be class ids in [0, 3), found the float 0.5. Give integer "
                "ids, or one-hot rows (batch, 3).")
DATA = ("data must be a tuple (x, y) of arrays, a tf.data.Dataset of (x, y) batches, or "
        "an iterable of them; got {}")


@pytest.fixture(scope="module")
def setup():
    """A 3-block AL MLP (8 features, 3 classes), its FLOPs, and data."""
    keras.utils.set_random_seed(0)
    model = al_keras.models.get("mlp", input_shape=(8,), num_classes=3, hidden_units=8,
                                label_units=4, num_blocks=3)
    model.compile("adam", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((40, 8), dtype=np.float32)
    y = rng.integers(0, 3, 40).astype("int32")
    return model, early_exit.exit_flops(model), x, y


def _batches(x, y, size=8):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(size)


def _short(value):
    """Test ids: the short strings; pytest's own for the rest."""
    return value if isinstance(value, str) and len(value) <= 50 else None


def _refused(fn, message, error=al_keras.InputDataError):
    with pytest.raises(error) as raised:
        fn()
    assert str(raised.value) == message


# ------------------------------------------------------------- calibrate
@pytest.mark.parametrize("case, message", [
    ("float labels", "calibrate: " + FLOAT_LABELS),
    ("float labels (arrays)", "calibrate: " + FLOAT_LABELS),
    ("labels 7", "calibrate: labels must be class ids in [0, 3) (num_classes=3), found 7."),
    ("labels -1 (arrays)",
     "calibrate: labels must be class ids in [0, 3) (num_classes=3), found -1."),
    ("lengths", "calibrate: x holds 40 examples but y 30 labels; give one label per "
     "example."),
    ("shape", "calibrate: model 'mlp_al' takes inputs of shape (batch, 8), got (batch, 4). "
     "Reshape the data, or build a model for this shape."),
    ("nan", "calibrate: input features hold NaN or Inf (1 of them); clean the data."),
    ("no labels", "calibrate: the dataset holds no labels; give (x, y) batches."),
    ("features only", "calibrate: " + DATA.format("ndarray (features without labels).")),
    ("none", "calibrate: " + DATA.format("NoneType.")),
    ("three arrays", "calibrate: data must be a tuple (x, y) of arrays, got a tuple of 3 "
     "arrays."),
    ("empty", "calibrate: the data holds no batch (no examples)."),
    ("empty arrays", "calibrate: the data holds no batch (no examples)."),
    ("bad batch", "calibrate: batch 1 is a ndarray, not an (x, y) pair."),
], ids=_short)
def test_calibrate_checks_its_data_as_fit_does(setup, case, message):
    model, flops, x, y = setup
    halves = np.full(40, 0.5, np.float32)
    nan = x.copy()
    nan[3, 3] = np.nan
    data = {
        "float labels": _batches(x, halves), "float labels (arrays)": (x, halves),
        "labels 7": _batches(x, np.full(40, 7)), "labels -1 (arrays)": (x, y * 0 - 1),
        "lengths": (x, y[:30]), "shape": _batches(x[:, :4], y), "nan": (nan, y),
        "no labels": tf.data.Dataset.from_tensor_slices(x).batch(8),
        "features only": x, "none": None, "three arrays": (x, y, y),
        "empty": _batches(x, y).take(0), "empty arrays": (x[:0], y[:0]),
        "bad batch": [x],
    }[case]
    model.exit_threshold = 0.75
    _refused(lambda: early_exit.calibrate(model, data, flops=flops), message)
    assert model.exit_threshold == 0.75  # Kept as it was.


def test_calibrate_takes_arrays_as_a_dataset_of_their_batches(setup):
    model, flops, x, y = setup
    from_arrays = early_exit.calibrate(model, (x, y), max_accuracy_drop=0.2, flops=flops,
                                       keep=False)
    from_batches = early_exit.calibrate(model, _batches(x, y, 32), max_accuracy_drop=0.2,
                                        flops=flops, keep=False)
    assert from_arrays.to_dict() == from_batches.to_dict()
    assert from_arrays.num_examples == 40
    at = early_exit.evaluate_at(model, (x, y), 0.5, "margin", flops)
    assert at == early_exit.evaluate_at(model, _batches(x, y), 0.5, "margin", flops)
    assert model.evaluate_exits((x, y)) == model.evaluate_exits(_batches(x, y))
    # Ids as whole floats and one-hot rows are the same labels.
    assert early_exit.evaluate_at(model, (x, np.eye(3)[y]), 0.5, "margin", flops) == at


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(max_accuracy_drop=float("nan")), ValueError, "calibrate: " + DROP.format("nan")),
    (dict(max_accuracy_drop=-0.1), ValueError, "calibrate: " + DROP.format("-0.1")),
    (dict(max_accuracy_drop="0.01"), ValueError, "calibrate: " + DROP.format("'0.01'")),
    (dict(drop_bound_z=float("inf")), ValueError, "calibrate: " + Z.format("inf")),
    (dict(drop_bound_z=float("nan")), ValueError, "calibrate: " + Z.format("nan")),
    (dict(flops={"encoders": [1, 2], "exits": [3, 4]}), ValueError,
     "calibrate: flops must be exit_flops(model), a dict of 'encoders' and 'exits' with 3 "
     "counts each (one per block), got {'encoders': [1, 2], 'exits': [3, 4]}."),
], ids=_short)
def test_calibrate_refuses_bad_arguments(setup, kwargs, error, message):
    model, flops, x, y = setup
    _refused(lambda: early_exit.calibrate(model, (x, y), **{"flops": flops, **kwargs}),
             message, error)


def test_calibrate_refuses_a_model_without_exits_and_takes_one_block():
    bp = al_keras.models.get("mlp", input_shape=(8,), num_classes=3, hidden_units=8,
                             label_units=4, method="bp")
    data = (np.zeros((4, 8), np.float32), np.zeros(4, np.int32))
    _refused(lambda: early_exit.calibrate(bp, data), "calibrate: model must be an "
             "al_keras.ALModel (the model with exits), got BPModel.", TypeError)
    _refused(lambda: early_exit.exit_flops(bp), "exit_flops: model must be an "
             "al_keras.ALModel (the model with exits), got BPModel.", TypeError)
    unbuilt = al_keras.associate([keras.layers.Dense(4), keras.layers.Dense(4)],
                                 num_classes=3, label_units=4, name="unbuilt")
    _refused(lambda: early_exit.calibrate(unbuilt, data), "calibrate: model 'unbuilt' is "
             "not built; build it (model.build((None, ...)), or fit it) first.", ValueError)
    # One block has no early exit: the full path, nothing saved (was an IndexError).
    one = al_keras.models.get("mlp", input_shape=(8,), num_classes=3, hidden_units=8,
                              label_units=4, num_blocks=1)
    result = early_exit.calibrate(one, data)
    assert result.threshold == float("inf") and result.exit_fractions == [1.0]
    assert result.flops_saved == 0.0 and one.exit_threshold is None


@pytest.mark.parametrize("threshold, measure, error, message", [
    (float("nan"), "max_prob", ValueError, "The exit threshold must be >= 0 (a confidence "
     "in [0, 1]; above 1: the full path), got nan."),
    ("0.5", "max_prob", TypeError, "The exit threshold must be a number (a confidence in "
     "[0, 1]; above 1: the full path), got '0.5'."),
    (0.5, "entropy", ValueError, "Unknown exit confidence 'entropy'; expected one of "
     "('max_prob', 'margin')."),
], ids=_short)
def test_evaluate_at_refuses_what_would_measure_nonsense(setup, threshold, measure, error,
                                                         message):
    model, flops, x, y = setup
    _refused(lambda: early_exit.evaluate_at(model, (x, y), threshold, measure, flops),
             message, error)


def test_evaluate_at_and_evaluate_exits_check_labels(setup):
    model, flops, x, _ = setup
    halves = _batches(x, np.full(40, 0.5, np.float32))
    _refused(lambda: early_exit.evaluate_at(model, halves, 0.5, "max_prob", flops),
             "evaluate_at: " + FLOAT_LABELS)
    _refused(lambda: model.evaluate_exits(halves), "evaluate_exits: " + FLOAT_LABELS)
    _refused(lambda: model.evaluate_exits(halves.take(0)),
             "evaluate_exits: the data holds no batch (no examples).")


# ------------------------------------------------------------ text models
@pytest.fixture(scope="module")
def text_model():
    vectorizer = keras.layers.TextVectorization(max_tokens=10, output_sequence_length=6)
    vectorizer.adapt(["a b c", "d e f g", "a c e"])
    model = al_keras.models.get("lstm", sequence_length=6, num_classes=3, vocab_size=10,
                                embedding_dim=4, lstm_units=2, label_units=4,
                                preprocessor=vectorizer)
    model.compile("adam", metrics=["accuracy"])
    return model


def test_strings_for_a_text_model_point_to_its_preprocessor(text_model):
    texts, labels = np.array(["a b", "c d"]), np.array([0, 1])
    message = ("{}: model 'lstm_al' got strings; a text model takes token ids (batch, 6): "
               "vectorize the texts with model.preprocessor(texts) first.")
    _refused(lambda: text_model.predict(texts, verbose=0), message.format("predict"))
    _refused(lambda: text_model.predict(list(texts), verbose=0), message.format("predict"))
    _refused(lambda: text_model.evaluate(texts, labels, verbose=0),
             message.format("evaluate"))
    _refused(lambda: text_model.fit(tf.data.Dataset.from_tensor_slices(
        (texts, labels)).batch(2), verbose=0), message.format("fit"))
    _refused(lambda: early_exit.calibrate(text_model, (texts, labels)),
             message.format("calibrate"))
    ids = text_model.preprocessor(texts)  # What the message says to do works.
    assert text_model.predict(ids, verbose=0).shape == (2, 3)
    # Token ids outside the vocabulary, read from a dataset: quotes unescaped.
    _refused(lambda: early_exit.exit_outputs(text_model, _batches(np.full((4, 6), 12),
                                                                  np.zeros(4, "int32"))),
             "exit_outputs: token ids must be integers in [0, 10) (the model's vocabulary; "
             "0 is padding), found 12. Vectorize the text with the model's preprocessor.")


def test_strings_for_a_model_of_numbers(setup):
    model = setup[0]
    _refused(lambda: model.predict(np.array(["a"] * 4), verbose=0),
             "predict: model 'mlp_al' takes numbers of shape (batch, 8), got strings.")


# ---------------------------------------------------- fit/evaluate/predict
@pytest.mark.parametrize("call, message", [
    ("fit(sample_weight=np.ones(10))", "fit: sample_weight must hold one number per "
     "example, shape (40,), got float64 of shape (10,)."),
    ("fit(sample_weight=-np.ones(40))",
     "fit: sample_weight must be finite numbers >= 0, found -1.0."),
    ("fit(sample_weight=np.full(40, np.nan))",
     "fit: sample_weight must be finite numbers >= 0, found nan."),
    ("fit(sample_weight=np.ones((40, 3)))", "fit: sample_weight must hold one number per "
     "example, shape (40,), got float64 of shape (40, 3)."),
    ("evaluate(sample_weight=np.ones(10))", "evaluate: sample_weight must hold one number "
     "per example, shape (40,), got float64 of shape (10,)."),
    ("fit(dataset with sample_weight -1)",
     "fit: sample_weight must be finite numbers >= 0, found -1."),
    ("fit(validation_data=(x,))", "fit (validation_data): validation_data must be (x, y), "
     "(x, y, sample_weight) or a dataset of (x, y) batches; got a tuple of 1 item(s)."),
    ("fit(validation_data=x)", "fit (validation_data): validation_data must be (x, y), "
     "(x, y, sample_weight) or a dataset of (x, y) batches; got features without labels."),
    ("fit(validation_data=(x, y[:5]))", "fit (validation_data): x holds 40 examples but y "
     "5 labels; give one label per example."),
    ("fit(validation_data=(x, y, np.full(40, np.nan)))",
     "fit (validation_data): sample_weight must be finite numbers >= 0, found nan."),
    ("fit(class_weight={0: 1.0, 7: 2.0})", "fit: class_weight names class 7; classes are "
     "ints in [0, 3) (num_classes=3)."),
    ("fit(class_weight={'0': 1.0})", "fit: class_weight names class '0'; classes are ints "
     "in [0, 3) (num_classes=3)."),
    ("fit(class_weight={0: -1.0})",
     "fit: class_weight[0] must be a finite number >= 0, got -1.0."),
    ("fit(class_weight={0: np.nan})",
     "fit: class_weight[0] must be a finite number >= 0, got nan."),
    ("fit(class_weight=[1.0, 1.0, 1.0])",
     "fit: class_weight must be a dict class id -> weight, got list."),
    ("fit(batch_size=0)", "fit: batch_size must be an int >= 1 (or None: 32), got 0."),
    ("fit(batch_size=2.5)", "fit: batch_size must be an int >= 1 (or None: 32), got 2.5."),
    ("predict(batch_size=0)",
     "predict: batch_size must be an int >= 1 (or None: 32), got 0."),
    ("evaluate(batch_size=-1)",
     "evaluate: batch_size must be an int >= 1 (or None: 32), got -1."),
    ("fit(validation_split=1.5)", "fit: validation_split must be a number in [0, 1) (the "
     "fraction of x held out), got 1.5."),
    ("fit(x, y[:30])",
     "fit: x holds 40 examples but y 30 labels; give one label per example."),
    ("fit(x)", "fit: the labels y are missing; give fit(x, y), or a dataset of (x, y) "
     "batches."),
    ("evaluate(x)", "evaluate: the labels y are missing; give evaluate(x, y), or a dataset "
     "of (x, y) batches."),
    ("fit(None, y)", "fit: x is missing; give fit(x, y)."),
    ("fit(x.tolist(), y)", "fit: x is a Python list; give a NumPy array (np.asarray(x)), a "
     "tensor, or a tf.data.Dataset."),
    ("fit(x, list(y))", "fit: y is a Python list; give a NumPy array (np.asarray(y)), a "
     "tensor, or a tf.data.Dataset."),
    ("fit(x, y as strings)", "fit: labels must be class ids in [0, 3) or one-hot rows "
     "(batch, 3), got strings."),
], ids=_short)
def test_fit_evaluate_predict_refuse_bad_arguments(setup, call, message):
    model, _, x, y = setup
    before = [w.copy() for w in model.get_weights()]
    weighted = tf.data.Dataset.from_tensor_slices((x, y, -np.ones(40, "float32"))).batch(8)
    calls = {
        "fit(sample_weight=np.ones(10))": lambda: model.fit(x, y, sample_weight=np.ones(10)),
        "fit(sample_weight=-np.ones(40))": lambda: model.fit(x, y,
                                                             sample_weight=-np.ones(40)),
        "fit(sample_weight=np.full(40, np.nan))": lambda: model.fit(
            x, y, sample_weight=np.full(40, np.nan)),
        "fit(sample_weight=np.ones((40, 3)))": lambda: model.fit(
            x, y, sample_weight=np.ones((40, 3))),
        "evaluate(sample_weight=np.ones(10))": lambda: model.evaluate(
            x, y, sample_weight=np.ones(10)),
        "fit(dataset with sample_weight -1)": lambda: model.fit(weighted),
        "fit(validation_data=(x,))": lambda: model.fit(x, y, validation_data=(x,)),
        "fit(validation_data=x)": lambda: model.fit(x, y, validation_data=x),
        "fit(validation_data=(x, y[:5]))": lambda: model.fit(x, y,
                                                             validation_data=(x, y[:5])),
        "fit(validation_data=(x, y, np.full(40, np.nan)))": lambda: model.fit(
            x, y, validation_data=(x, y, np.full(40, np.nan))),
        "fit(class_weight={0: 1.0, 7: 2.0})": lambda: model.fit(
            x, y, class_weight={0: 1.0, 7: 2.0}),
        "fit(class_weight={'0': 1.0})": lambda: model.fit(x, y, class_weight={"0": 1.0}),
        "fit(class_weight={0: -1.0})": lambda: model.fit(x, y, class_weight={0: -1.0}),
        "fit(class_weight={0: np.nan})": lambda: model.fit(x, y, class_weight={0: np.nan}),
        "fit(class_weight=[1.0, 1.0, 1.0])": lambda: model.fit(x, y,
                                                               class_weight=[1.0] * 3),
        "fit(batch_size=0)": lambda: model.fit(x, y, batch_size=0),
        "fit(batch_size=2.5)": lambda: model.fit(x, y, batch_size=2.5),
        "predict(batch_size=0)": lambda: model.predict(x, batch_size=0),
        "evaluate(batch_size=-1)": lambda: model.evaluate(x, y, batch_size=-1),
        "fit(validation_split=1.5)": lambda: model.fit(x, y, validation_split=1.5),
        "fit(x, y[:30])": lambda: model.fit(x, y[:30]),
        "fit(x)": lambda: model.fit(x),
        "evaluate(x)": lambda: model.evaluate(x),
        "fit(None, y)": lambda: model.fit(None, y),
        "fit(x.tolist(), y)": lambda: model.fit(x.tolist(), y),
        "fit(x, list(y))": lambda: model.fit(x, list(y)),
        "fit(x, y as strings)": lambda: model.fit(x, y.astype(str)),
    }
    _refused(calls[call], message)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)  # Nothing trained.


def test_numpy_ints_are_exits(setup):
    model, _, x, _ = setup
    np.testing.assert_array_equal(model.predict(x, exit=np.int64(2), verbose=0),
                                  model.predict(x, exit=2, verbose=0))


# ----------------------------------------------------- associate, models.get
SHAPE = ("input_shape must be a non-empty tuple of ints >= 1, one example's shape without "
         "the batch axis (e.g. (28, 28, 1)), got {}.")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(label_units=2.5), ValueError,
     "label_units must be an int >= 1, or one per block, got 2.5."),
    (dict(label_units=[4, 0]), ValueError,
     "label_units must be an int >= 1, or one per block, got [4, 0]."),
    (dict(encoders="dense"), TypeError, "encoders must be a list of Keras layers, one per "
     "block (f_1 ... f_L), got str."),
    (dict(encoders="one layer"), TypeError, "encoders must be a list of Keras layers, one "
     "per block (f_1 ... f_L), got Dense."),
    (dict(encoders="a function"), TypeError,
     "Encoder 2 is a function; each encoder must be a Keras layer (or model)."),
    (dict(encoders="shared"), ValueError, "Encoders 1 and 2 are the same layer object; "
     "each block needs its own layer (AL trains each block's apart)."),
    (dict(input_shape=(0,)), ValueError, SHAPE.format("(0,)")),
    (dict(loss_weights=[1.0, float("nan")]), ValueError,
     "loss_weights must be 2 finite numbers >= 0 (one per block), got [1.0, nan]."),
    (dict(ae_lr_multiplier="x"), ValueError,
     "ae_lr_multiplier must be a finite number > 0, got 'x'."),
], ids=_short)
def test_associate_refuses_bad_arguments(kwargs, error, message):
    dense = keras.layers.Dense(4)
    encoders = {"dense": "dense", "one layer": dense, "a function": [dense, lambda t: t],
                "shared": [dense, dense]}.get(kwargs.pop("encoders", None),
                                              [dense, keras.layers.Dense(4)])
    _refused(lambda: al_keras.associate(encoders, **{"num_classes": 3, "label_units": 4,
                                                      **kwargs}), message, error)


@pytest.mark.parametrize("name, options, message", [
    ("mlp", dict(input_shape=(0,)), SHAPE.format("(0,)")),
    ("mlp", dict(input_shape=(-1,)), SHAPE.format("(-1,)")),
    ("mlp", dict(input_shape=8), SHAPE.format("8")),
    ("mlp", dict(input_shape=()), SHAPE.format("()")),
    ("mlp", dict(hidden_units=2.5), "Option hidden_units=2.5 is invalid: must be >= 1 "
     "(an int)."),
    ("mlp", dict(num_blocks=1.5), "Option num_blocks=1.5 is invalid: an AL model needs "
     "num_blocks >= 1 (an int)."),
    ("mlp", dict(encoder_activation="swishy"), "Option encoder_activation='swishy' is "
     "invalid: not a Keras activation (e.g. 'relu', 'elu', 'tanh')."),
    ("mlp", dict(method="bp", head_activation="swishy"), "Option head_activation='swishy' "
     "is invalid: not a Keras activation (e.g. 'relu', 'elu', 'tanh')."),
    ("mlp", dict(kernel_regularizer=-1.0), "Option kernel_regularizer=-1.0 is invalid: an "
     "L2 factor must be a finite number >= 0 (or give a Keras regularizer)."),
    ("mlp", dict(kernel_regularizer=float("nan")), "Option kernel_regularizer=nan is "
     "invalid: an L2 factor must be a finite number >= 0 (or give a Keras regularizer)."),
    ("lstm", dict(dropout=1.5), "Option dropout=1.5 is invalid: must be a fraction in "
     "[0, 1)."),
    ("lstm", dict(dropout=-0.1), "Option dropout=-0.1 is invalid: must be a fraction in "
     "[0, 1)."),
    ("lstm", dict(input_shape=None, sequence_length=0), "models.get('lstm'): "
     "sequence_length must be an int >= 1 (tokens per text), got 0."),
], ids=_short)
def test_models_get_refuses_bad_options(name, options, message):
    defaults = {"mlp": dict(input_shape=(8,), hidden_units=8, label_units=4),
                "lstm": dict(input_shape=(6,), vocab_size=10, embedding_dim=4,
                             lstm_units=2, label_units=4)}[name]
    _refused(lambda: al_keras.models.get(name, num_classes=3, **{**defaults, **options}),
             message, ValueError)
