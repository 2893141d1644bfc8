"""Every config and variant: builds, validates, and takes one training step."""

import os

import keras
import ml_collections
import numpy as np
import pytest

import al_keras
from al_keras.training import config_lib

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "configs")
# One example's shape and the classes of each dataset.
SHAPES = {"digits": ((8, 8, 1), 10), "mnist": ((28, 28, 1), 10),
          "fashion_mnist": ((28, 28, 1), 10), "cifar10": ((32, 32, 3), 10),
          "cifar100": ((32, 32, 3), 100), "tiny_imagenet": ((64, 64, 3), 200),
          "wordnet": ((32,), 26), "ag_news": ((128,), 4), "imdb": ((256,), 2),
          "sst2": ((128,), 2), "dbpedia": ((128,), 14)}


def load_config_module(name):
    return config_lib.load_config_module(os.path.join(CONFIG_DIR, f"{name}.py"))


def _variants():
    """Every (config, model, method); the fast tier takes the first config of
    each (model, method), the slow tier the repeats on other datasets."""
    seen = set()
    for name in SHAPES:
        module = load_config_module(name)
        model_names = getattr(module, "MODELS", None) or ("mlp", "cnn")
        for model in model_names:
            for method in ("al", "bp"):
                marks = [pytest.mark.slow] if (model, method) in seen else []
                seen.add((model, method))
                yield pytest.param(name, f"model={model},method={method}", marks=marks)


def test_every_config_file_has_a_docstring_with_its_command():
    for name in SHAPES:
        module = load_config_module(name)
        assert "python train.py" in module.__doc__, name


@pytest.mark.parametrize("name, arg", list(_variants()))
def test_config_builds_validates_and_trains_one_step(name, arg):
    config = load_config_module(name).get_config(arg)
    config_lib.validate(config)
    assert config.dataset == name
    shape, classes = SHAPES[name]
    options = config.model_options.to_dict()
    if name in ("cifar10", "cifar100", "tiny_imagenet"):
        # The original bridges of these models hold up to 10^8 weights: one
        # step of them is the same code with bigger numbers; keep CI fast.
        options["bridge_multiplier"] = 0
    text = config.model in ("lstm", "transformer")
    if text:  # The data's vectorizer gives the vocabulary size.
        assert shape == (config.sequence_length,) and options["vocab_size"] is None
        options["vocab_size"] = 50
    model = al_keras.models.get(config.model, input_shape=shape, num_classes=classes,
                                method=config.method, **options)
    # Eagerly: tracing the step of a 4-block ResNet-32 costs more than one step.
    model.compile(optimizer=keras.optimizers.Adam(config.lr), metrics=["accuracy"],
                  run_eagerly=True)
    x = np.random.default_rng(0).random((2,) + shape).astype("float32")
    if text:
        x = np.random.default_rng(0).integers(0, 50, (2,) + shape).astype("int32")
    y = np.array([0, classes - 1])
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert int(model.optimizer.iterations) == 1


def test_light_variant_sets_the_light_bridges_for_both_methods():
    for name in ("fashion_mnist", "cifar10"):
        for method in ("al", "bp"):
            config = load_config_module(name).get_config(
                f"model=cnn,method={method},light")
            config_lib.validate(config)
            assert config.model_options.bridge_multiplier == 1
            assert config.model_options.bridge_pool_size == 4
    plain = load_config_module("fashion_mnist").get_config("model=cnn")
    assert (plain.model_options.bridge_multiplier,
            plain.model_options.bridge_pool_size) == (5, 0)


@pytest.mark.parametrize("name", list(SHAPES))
def test_smoke_variant_is_small(name):
    config = load_config_module(name).get_config("smoke")
    config_lib.validate(config)
    assert config.epochs == 1 and 0 < config.max_train_examples <= 256


def test_text_configs_have_the_iclr_2022_settings():
    lstm = load_config_module("ag_news").get_config("model=lstm,method=al")
    options = lstm.model_options
    assert (options.embedding_dim, options.lstm_units, options.label_units) == (300, 256, 128)
    assert (options.activation, options.output_loss, options.sequence_pooling) == (
        "tanh", "categorical_crossentropy", "mean")
    assert (lstm.lr, lstm.vocab_size, lstm.lr_schedule) == (1e-3, 30000, "constant")
    transformer = load_config_module("imdb").get_config("model=transformer,method=bp")
    assert (transformer.model_options.num_heads, transformer.sequence_length) == (6, 256)
    assert transformer.model_options.sequence_pooling == "mean"
    wordnet = load_config_module("wordnet").get_config("model=lstm,method=al")
    assert (wordnet.sequence_length, wordnet.epochs, wordnet.batch_size) == (32, 10, 128)
    mixed = load_config_module("wordnet").get_config()
    mixed.model = "cnn"
    with pytest.raises(ValueError, match="text sets .* take the text models"):
        config_lib.validate(mixed)


def test_original_settings():
    c10 = load_config_module("cifar10")
    vgg_al = c10.get_config("model=vgg,method=al")
    assert (vgg_al.lr, vgg_al.batch_size, vgg_al.epochs) == (1e-4, 32, 200)
    assert vgg_al.model_options.kernel_regularizer == 1e-5 and vgg_al.augment
    assert c10.get_config("model=vgg,method=bp").model_options.kernel_regularizer == 5e-4
    assert c10.get_config("model=resnet20,method=bp").lr == 1e-3
    assert load_config_module("tiny_imagenet").get_config().batch_size == 100


@pytest.mark.parametrize("name, arg", [
    ("digits", "original"), ("fashion_mnist", "model=cnn,original"),
    ("cifar10", "model=resnet20,light,original"), ("wordnet", "model=transformer,original")])
def test_the_original_word_gives_the_papers_label_side(name, arg):
    """AL's default is tanh with the tied initialisation; the word `original`
    gives the paper's code (tests/test_learning_from_the_start.py)."""
    module = load_config_module(name)
    default = module.get_config(arg.replace("original", "").strip(","))
    original = module.get_config(arg)
    assert (default.model_options.original, original.model_options.original) == (False, True)
    config_lib.validate(original)
    shape, classes = SHAPES[name]
    options = {k: v for k, v in original.model_options.to_dict().items() if v is not None}
    if name == "wordnet":
        options["vocab_size"] = 50
    model = al_keras.models.get(original.model, input_shape=shape, num_classes=classes,
                                **options)
    expected = "tanh" if name == "wordnet" else "sigmoid"  # Text: the ICLR code's tanh.
    assert {b.activation for b in model.blocks} == {expected}
    assert {b.get_config()["kernel_initializer"]["class_name"] for b in model.blocks} == {
        "HeNormal"}
    with pytest.raises(ValueError, match="original applies to method=al"):
        module.get_config(arg + ",method=bp")


@pytest.mark.parametrize("change, message", [
    (lambda c: setattr(c, "lr", 0.0), r"config.lr=0.0 is invalid: must be > 0"),
    (lambda c: setattr(c, "batch_size", 0), r"config.batch_size=0 is invalid"),
    (lambda c: setattr(c, "epochs", -1), r"config.epochs=-1 is invalid"),
    (lambda c: setattr(c, "model", "vgg99"), r"config.model='vgg99' is invalid"),
    (lambda c: setattr(c, "method", "dfa"), r"config.method='dfa' is invalid"),
    (lambda c: setattr(c, "dataset", "imagenet"), r"config.dataset='imagenet' is invalid"),
    (lambda c: setattr(c, "distribute", "tpu"), r"config.distribute='tpu' is invalid"),
    (lambda c: setattr(c, "placement", "0;1"), r"config.placement='0;1' is invalid"),
    (lambda c: setattr(c, "num_devices", -1), r"config.num_devices=-1 is invalid"),
    (lambda c: setattr(c, "dtype_policy", "float16"),
     r"config.dtype_policy='float16' is invalid: one of"),
    (lambda c: (setattr(c, "distribute", "blocks"), setattr(c, "method", "bp")),
     r"'blocks' places the blocks of an AL model"),
])
def test_bad_values_are_refused_naming_the_key(change, message):
    config = load_config_module("digits").get_config()
    change(config)
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config)


def test_unknown_and_mistyped_keys_are_refused():
    config = load_config_module("digits").get_config()
    config.unlock()
    config.learning_rate = 0.1
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) \['learning_rate'\]"):
        config_lib.validate(config)
    values = load_config_module("digits").get_config().to_dict()
    values["epochs"] = "ten"
    with pytest.raises(ValueError, match="config.epochs must be int"):
        config_lib.validate(ml_collections.ConfigDict(values))


def test_bad_config_arguments_are_named():
    with pytest.raises(ValueError, match="Unknown config argument 'modle'"):
        load_config_module("cifar10").get_config("modle=vgg")
    with pytest.raises(ValueError, match="have models"):
        load_config_module("mnist").get_config("model=vgg")
