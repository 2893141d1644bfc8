"""Experiment configs: the shared schema, argument parsing and validation.

Every `configs/<dataset>.py` has `get_config(arg=None)` built from
`base_config`; `train.py` overrides keys as `--config.lr=3e-4` and
`train_lib.train_and_evaluate` calls `validate` before building anything.
"""

import importlib.util
import math
import os
import re

import ml_collections
from ml_collections import config_dict

from al_keras import models as models_lib
from al_keras.core import early_exit, nonfinite
from al_keras.data import datasets

METHODS = ("al", "bp")
DISTRIBUTE = ("none", "blocks", "ray", "mirrored", "multi_worker")
DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
LR_SCHEDULES = ("original", "constant")
NONFINITE_LOSS = nonfinite.MODES
DATASETS = datasets.DATASETS

# key -> (type, description); the schema every config follows exactly.
SCHEMA = {
    "dataset": (str, f"one of {DATASETS}"),
    "data_dir": (str, "folder of the data ('' for TFDS' default)"),
    "model": (str, "a name of al_keras.models.names()"),
    "method": (str, f"one of {METHODS}"),
    "model_options": (ml_collections.ConfigDict, "options of models.get"),
    "epochs": (int, "number of epochs, >= 0"),
    "batch_size": (int, "training batch size, >= 1"),
    "test_batch_size": (int, "evaluation batch size, >= 1"),
    "lr": (float, "learning rate, > 0"),
    "lr_schedule": (str, f"one of {LR_SCHEDULES}"),
    "augment": (bool, "augment training images in tf.data"),
    "max_train_examples": (int, "use only the first N training examples (0: all)"),
    "max_test_examples": (int, "use only the first N test examples (0: all)"),
    "eval_exits": (bool, "measure every exit's test accuracy each epoch"),
    "validation_examples": (int, "hold out the last N training examples (0: none); "
                                 "method=al calibrates the adaptive exit on them "
                                 "at the end"),
    "exit_confidence": (str, f"the adaptive exit's confidence, one of "
                             f"{early_exit.CONFIDENCES}"),
    "max_exit_accuracy_drop": (float, "the validation accuracy the adaptive exit "
                                      "may give up (0.005: half a point)"),
    "exit_drop_bound_z": (float, "standard errors added to the adaptive exit's "
                                 "measured drop when calibrating (1.645: one-sided "
                                 "95%; 0: the drop alone)"),
    "sequence_length": (int, "text sets: tokens per example (longer texts "
                             "truncated, shorter ones padded)"),
    "vocab_size": (int, "text sets: the vectorizer's vocabulary, padding and "
                        "out-of-vocabulary ids included"),
    "with_words": (bool, "wordnet: the synset's words before its gloss"),
    "seed": (int, "random seed"),
    "distribute": (str, f"one of {DISTRIBUTE}: blocks on separate devices "
                        "(pipelined), pipeline stages as processes on Ray, or "
                        "data parallel on one or several hosts"),
    "num_stages": (int, "distribute=ray: stage processes (0: one per core, at "
                        "most one per block)"),
    "ray_address": (str, "distribute=ray: a Ray cluster's address ('': start a "
                         "local Ray sized to this machine)"),
    "cpus_per_stage": (float, "distribute=ray: CPUs of each stage (0: the "
                              "cores shared evenly, at most 1)"),
    "gpus_per_stage": (float, "distribute=ray: GPUs of each stage"),
    "num_devices": (int, "devices to use (0: every GPU, or without a GPU the "
                         "CPU split into one logical device per core)"),
    "placement": (str, "distribute=blocks: 'auto' (balanced by measured cost) "
                       "or a device index per block, e.g. '0,0,1,1'"),
    "pipeline": (bool, "distribute=blocks: pipeline the blocks (else run them "
                       "one after the other on their devices)"),
    "export": (bool, "write saved_model/ at the end"),
    "steps_per_execution": (int, "batches per call of the train step (Keras'; "
                                 "with distribute=ray, batches per Ray call of "
                                 "each stage, which divides Ray's per-call cost; "
                                 "batch-level logs come every N batches)"),
    "jit_compile": (bool, "compile the train step with XLA (about 2x faster "
                          "for AL on CPU; with distribute=none and ray; "
                          "distribute=blocks compiles each block's step on "
                          "GPUs, not on CPU devices)"),
    "dtype_policy": (str, f"one of {DTYPE_POLICIES}: Keras' mixed precision "
                          "(float16 with a loss scale per block optimizer, or "
                          "bfloat16; variables stay float32)"),
    "check_data": (bool, "check every batch in the input pipeline: input "
                         "shape, labels in [0, num_classes), finite features"),
    "on_nonfinite_loss": (str, f"one of {NONFINITE_LOSS}: a NaN/Inf local "
                               "loss stops training naming the block and step, "
                               "or (method=al) a block skips that batch's "
                               "update (counted as skipped_updates)"),
    "deterministic": (bool, "TensorFlow op determinism: bit-identical reruns "
                            "(slower; see docs/reliability.md)"),
}

# The defaults of the keys that do not depend on the experiment.  A workdir
# whose config.json predates a key is resumed when the key has its default.
DEFAULTS = {
    "data_dir": "",
    "lr_schedule": "original",
    "max_train_examples": 0,
    "max_test_examples": 0,
    "eval_exits": True,
    "validation_examples": 0,
    "exit_confidence": "max_prob",
    "max_exit_accuracy_drop": 0.005,
    "exit_drop_bound_z": 1.645,
    "sequence_length": 128,
    "vocab_size": 30000,
    "with_words": False,
    "seed": 0,
    "distribute": "none",
    "num_devices": 0,
    "placement": "auto",
    "pipeline": True,
    "num_stages": 0,
    "ray_address": "",
    "cpus_per_stage": 0.0,
    "gpus_per_stage": 0.0,
    "export": True,
    "steps_per_execution": 1,
    "jit_compile": True,
    "dtype_policy": "float32",
    "check_data": True,
    "on_nonfinite_loss": "stop",
    "deterministic": False,
}


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names it."""


# The paper's CIFAR-10/100 models: options and learning rates of the original
# code (configs/cifar10.py and configs/cifar100.py share them).
CIFAR_MODELS = {
    "mlp": {"options": {"hidden_units": 3000, "label_units": 3000}},
    "cnn": {},
    "vgg": {"al": {"kernel_regularizer": 1e-5}, "bp": {"kernel_regularizer": 5e-4}},
    "resnet20": {"lr": 1e-3, "options": {"kernel_regularizer": 1e-4}},
    "resnet32": {"lr": 1e-3, "options": {"kernel_regularizer": 1e-4}},
}


# The light bridges (`:light` of the paper configs): the bridge's hidden
# layer 1x instead of 5x the label width, and a convolutional s_i
# average-pooled to 4x4 before it instead of flattened whole (2x2 cost the
# Fashion-MNIST CNN 0.8 points).  The BP twin's head mirrors the last
# bridge.  See docs/performance.md, "Light bridges".
LIGHT_BRIDGE = {"bridge_multiplier": 1, "bridge_pool_size": 4}


def load_config_module(path):
    """Imports a config file (`configs/<dataset>.py`) as a module."""
    name = "config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_arg(arg, **defaults):
    """Parses a config argument `"model=cnn,method=bp,smoke"` over `defaults`.

    A bare word sets that name to True.  Values are converted to the type of
    their default; an unknown name raises ValueError listing the known ones.
    """
    values = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        name, sep, value = item.partition("=")
        name = name.strip()
        if name not in defaults:
            raise ConfigError(
                f"Unknown config argument {name!r}; expected some of "
                f"{sorted(defaults)} (as name=value, comma-separated)."
            )
        if not sep:
            values[name] = True
        elif isinstance(defaults[name], bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ConfigError(f"Config argument {name} must be true or false, got {value!r}.")
            values[name] = value.lower() in ("true", "1")
        else:
            values[name] = type(defaults[name])(value)
    return ml_collections.ConfigDict(values)


def full_model_options(model, method, options):
    """Every option of `models.get(model, method=method)`, `options` over defaults.

    Listing them all makes each one overridable from the command line
    (`--config.model_options.activation=tanh`); options without a default
    are typed placeholders (`None` until set).
    """
    try:
        settings = models_lib.check_options(model, method, dict(options))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    placeholders = {"kernel_regularizer": float, "loss_weights": tuple,
                    "vocab_size": int}
    values = {}
    for key, value in settings.items():
        if value is None:
            value = config_dict.placeholder(placeholders.get(key, str))
        elif key == "bridge_multiplier":
            value = float(value)  # So that 2.5 can be given on the command line.
        values[key] = value
    return ml_collections.ConfigDict(values)


def base_config(dataset, model, method, *, epochs=200, batch_size=32, lr=1e-4,
                test_batch_size=100, augment=False, model_options=None):
    """A config with every key of SCHEMA, defaulting to the original code's."""
    config = ml_collections.ConfigDict()
    config.dataset = dataset
    config.data_dir = ""
    config.model = model
    config.method = method
    config.model_options = full_model_options(model, method, model_options or {})
    config.epochs = epochs
    config.batch_size = batch_size
    config.test_batch_size = test_batch_size
    config.lr = lr
    config.augment = augment
    config.update(DEFAULTS)
    return config


def paper_config(dataset, models, arg, *, batch_size=32, augment=False):
    """The config of one of the paper's experiments.

    Args:
        dataset: the dataset's name.
        models: model name -> spec, a dict with optional keys `options`
            (model options of both methods), `al` / `bp` (options of one
            method) and `lr` (instead of the original 1e-4).
        arg: the config argument, `"model=...,method=...,light,original,smoke"`
            (`light`: the light bridges, `LIGHT_BRIDGE`; `original`: AL
            with the paper's sigmoid label side and He-normal
            initialisation, `models.get(..., original=True)`).
        batch_size: the original batch size.
        augment: whether the original augmented this dataset.
    """
    args = parse_arg(arg, model=next(iter(models)), method="al", light=False,
                     original=False, smoke=False)
    if args.model not in models:
        raise ConfigError(
            f"The {dataset} configs have models {sorted(models)}, got "
            f"{args.model!r}."
        )
    if args.method not in METHODS:
        raise ConfigError(f"Unknown method {args.method!r}; expected one of {METHODS}.")
    spec = models[args.model]
    options = {**spec.get("options", {}), **spec.get(args.method, {})}
    if args.light:
        options.update(LIGHT_BRIDGE)
    options.update(original_options(args))
    config = base_config(dataset, args.model, args.method, batch_size=batch_size,
                         lr=spec.get("lr", 1e-4), augment=augment,
                         model_options=options)
    return smoke(config) if args.smoke else config


# The text models with the ICLR 2022 follow-up's settings (Wu et al.; their
# configs): embedding 300 (theirs pretrained GloVe / fastText, which cannot
# be had offline: here trained from scratch), hidden 512 (a bidirectional
# LSTM of 256 a direction; the Transformer's feed-forward), label width 128,
# 6 heads, tanh, Adam 1e-3, vocabulary 30,000.
TEXT_MODELS = {
    "lstm": {"embedding_dim": 300, "lstm_units": 256, "label_units": 128},
    "transformer": {"embedding_dim": 300, "num_heads": 6, "intermediate_dim": 512,
                    "label_units": 128},
}


def text_config(dataset, arg, *, models=None, sequence_length=128, batch_size=128,
                epochs=10, lr=1e-3, vocab_size=30000):
    """The config of a text set: `"model=lstm|transformer,method=al|bp,smoke"`.

    Args:
        dataset: a text set's name.
        arg: the config argument.
        models: model name -> model options (default `TEXT_MODELS`).
        sequence_length, batch_size, epochs, lr, vocab_size: its settings
            (Adam, constant learning rate).
    """
    models = models or TEXT_MODELS
    args = parse_arg(arg, model="lstm", method="al", original=False, smoke=False)
    if args.model not in models:
        raise ConfigError(f"The {dataset} configs have models {sorted(models)}, got "
                          f"{args.model!r}.")
    if args.method not in METHODS:
        raise ConfigError(f"Unknown method {args.method!r}; expected one of {METHODS}.")
    config = base_config(dataset, args.model, args.method, epochs=epochs,
                         batch_size=batch_size, lr=lr, test_batch_size=256,
                         model_options={**models[args.model],
                                        **original_options(args)})
    config.lr_schedule = "constant"
    config.sequence_length = sequence_length
    config.vocab_size = vocab_size
    return smoke(config) if args.smoke else config


def original_options(args):
    """The model options of a config argument's `original` word: AL as in
    the paper's code (`models.get(..., original=True)`); BP has no other."""
    if args.original and args.method != "al":
        raise ConfigError(f"Config argument original applies to method=al (the paper's "
                          f"label side); method={args.method} has no other settings.")
    return {"original": True} if args.original else {}


def smoke(config):
    """Shrinks `config` in place to a seconds-long run (big_vision's runlocal)."""
    config.epochs = 1
    config.max_train_examples = 256
    config.max_test_examples = 256
    config.test_batch_size = min(config.test_batch_size, 64)
    options = config.model_options
    options.label_units = 16
    if config.method == "al" or "bridge_multiplier" in options:
        options.bridge_multiplier = 0
    if config.model == "mlp":
        options.hidden_units = 64
    if config.model == "cnn":
        options.filters = (4, 4, 8, 8)
    if config.model == "vgg":
        options.dense_units = 32
    if config.model in models_lib.text_backbones.TEXT_BACKBONES:
        options.embedding_dim = 16
        options.num_layers = 1
        config.vocab_size = min(config.vocab_size, 2000)
        config.sequence_length = min(config.sequence_length, 16)
        if config.model == "lstm":
            options.lstm_units = 8
        else:
            options.num_heads, options.intermediate_dim = 2, 16
    return config


def validate(config):
    """Raises ConfigError (a ValueError) naming the first bad key or value."""
    keys = set(config.keys())
    unknown = sorted(keys - set(SCHEMA))
    if unknown:
        raise ConfigError(
            f"Unknown config key(s) {unknown}; known keys: {sorted(SCHEMA)}."
        )
    missing = sorted(set(SCHEMA) - keys)
    if missing:
        raise ConfigError(f"Config is missing key(s) {missing}.")
    for key, (kind, meaning) in SCHEMA.items():
        value = config[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(
                f"config.{key} must be {kind.__name__} ({meaning}), got "
                f"{value!r} of type {type(value).__name__}."
            )

    def check(condition, key, allowed):
        if not condition:
            raise ConfigError(f"config.{key}={config[key]!r} is invalid: {allowed}.")

    check(config.dataset in DATASETS, "dataset", SCHEMA["dataset"][1])
    check(config.model in models_lib.names(), "model",
          f"one of {models_lib.names()}")
    check(config.method in METHODS, "method", SCHEMA["method"][1])
    check(config.epochs >= 0, "epochs", "must be >= 0")
    check(config.batch_size >= 1, "batch_size", "must be >= 1")
    check(config.test_batch_size >= 1, "test_batch_size", "must be >= 1")
    check(0 < config.lr < math.inf, "lr", "must be > 0 and finite")
    check(0 <= config.seed < 2**32, "seed", "must be in [0, 2**32) (numpy's and "
          "TensorFlow's seeds)")
    check(config.lr_schedule in LR_SCHEDULES, "lr_schedule", SCHEMA["lr_schedule"][1])
    check(config.max_train_examples >= 0, "max_train_examples", "must be >= 0")
    check(config.max_test_examples >= 0, "max_test_examples", "must be >= 0")
    check(config.validation_examples >= 0, "validation_examples", "must be >= 0")
    check(config.exit_confidence in early_exit.CONFIDENCES, "exit_confidence",
          f"one of {early_exit.CONFIDENCES}")
    check(0 <= config.max_exit_accuracy_drop <= 1, "max_exit_accuracy_drop",
          "must be in [0, 1] (a fraction of accuracy: 0.005 is half a point)")
    check(0 <= config.exit_drop_bound_z < math.inf, "exit_drop_bound_z",
          "must be >= 0 and finite")
    check(config.sequence_length >= 1, "sequence_length", "must be >= 1")
    check(config.vocab_size >= 3, "vocab_size",
          "must be >= 3 (padding, out-of-vocabulary and at least one word)")
    check(not config.with_words or config.dataset == "wordnet", "with_words",
          "only the wordnet set has a synset's words")
    text_set = config.dataset in datasets.text_lib.TEXT_DATASETS
    text_model = config.model in models_lib.text_backbones.TEXT_BACKBONES
    if text_set != text_model:
        raise ConfigError(
            f"config.model={config.model!r} cannot read config.dataset="
            f"{config.dataset!r}: text sets ({', '.join(datasets.text_lib.TEXT_DATASETS)}) "
            "take the text models (lstm, transformer), image sets the others.")
    check(config.distribute in DISTRIBUTE, "distribute", f"one of {DISTRIBUTE}")
    check(config.dtype_policy in DTYPE_POLICIES, "dtype_policy",
          f"one of {DTYPE_POLICIES}")
    check(config.num_devices >= 0, "num_devices", "must be >= 0")
    check(config.placement == "auto"
          or re.fullmatch(r"\d+(,\d+)*", config.placement), "placement",
          "'auto' or comma-separated device indices, one per block")
    if config.distribute in ("blocks", "ray"):
        check(config.method == "al", "distribute",
              f"{config.distribute!r} places the blocks of an AL model; the BP twin "
              "has none (use 'mirrored')")
    check(config.steps_per_execution >= 1, "steps_per_execution", "must be >= 1")
    check(config.num_stages >= 0, "num_stages", "must be >= 0 (0: automatic)")
    check(0 <= config.cpus_per_stage < math.inf, "cpus_per_stage",
          "must be >= 0 and finite (0: automatic)")
    check(0 <= config.gpus_per_stage < math.inf, "gpus_per_stage", "must be >= 0 and finite")
    check(config.on_nonfinite_loss in NONFINITE_LOSS, "on_nonfinite_loss",
          SCHEMA["on_nonfinite_loss"][1])
    if config.on_nonfinite_loss == "skip":
        check(config.method == "al", "on_nonfinite_loss",
              "'skip' skips a block's update; with method='bp' use 'stop'")
        check(config.distribute in ("none", "blocks", "ray"), "on_nonfinite_loss",
              "'skip' needs distribute 'none', 'blocks' or 'ray' (a replica "
              "cannot skip an all-reduced update alone); use 'stop'")
    try:
        settings = models_lib.check_options(config.model, config.method,
                                            config.model_options.to_dict())
    except ValueError as e:
        hint = (" Choose model and method with the config argument (e.g. "
                "configs/digits.py:model=cnn,method=bp), which sets "
                "model_options to match." if str(e).startswith("Unknown") else "")
        raise ConfigError(f"config.model_options: {e}{hint}") from None
    if config.distribute == "ray":
        _check_ray_plan(config, settings)
    return config


def _check_ray_plan(config, settings):
    """The Ray stages against the model's blocks and, for a local Ray, this
    machine's CPUs and GPUs: before Ray starts or the data loads."""
    from al_keras.distribute import ray_pipeline

    num_blocks = num_model_blocks(config, settings)
    placement = ("auto" if config.placement == "auto"
                 else [int(i) for i in config.placement.split(",")])
    try:
        stages, _ = ray_pipeline.plan_stages(num_blocks, config.num_stages or None, placement)
    except ValueError as e:
        raise ConfigError(f"config.{e}") from None
    if config.ray_address:
        return  # Another cluster's resources: checked once it is joined.
    try:
        ray_pipeline.check_stage_resources(
            stages, config.cpus_per_stage or None, config.gpus_per_stage,
            os.cpu_count() or 1, local_gpu_count(),
            where="this machine (a local Ray)")
    except ray_pipeline.StageResourceError as e:
        raise ConfigError(f"config.{e.option}={config[e.option]!r} is invalid: {e}") from None


def num_model_blocks(config, settings):
    """How many blocks the config's model has, from its encoders (made, not built)."""
    make_encoders, backbone_defaults, _ = models_lib.zoo.BACKBONES[config.model]
    text = config.model in models_lib.text_backbones.TEXT_BACKBONES
    options = {k: settings[k] for k in backbone_defaults}
    if text and options.get("vocab_size") is None:
        options["vocab_size"] = config.vocab_size
    shape = (config.sequence_length,) if text else (32, 32, 3)
    return len(make_encoders(shape, **options))


def local_gpu_count():
    """The GPUs of this machine that Keras' backend sees."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        try:
            return len(jax.devices("gpu"))
        except RuntimeError:  # No GPU backend.
            return 0
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))
