"""Model zoo: the original paper's networks as AL models and BP twins.

`get(name, input_shape=..., num_classes=..., method="al" | "bp", **options)`
returns a built, compile-ready model.  Backbones (`al_keras.models.backbones`):

* `"mlp"` -- the original MNIST MLP: `num_blocks` (2) blocks of
  Dense(`hidden_units`=1024, ELU); label width `label_units` (1024).
* `"cnn"` -- the original CNN: 4 blocks of two 3x3 convolutions with
  `filters` = (32, 32, 64, 64), stride 2 at the end of blocks 2 and 4, ELU;
  label width 256.
* `"vgg"` -- the CIFAR VGG in 4 blocks: [c128, c256, pool], [c256, c512,
  pool], [c512, pool, c512, pool], [Dense 1024, Dense 1024]; label width 300.
* `"resnet20"`, `"resnet32"` -- the CIFAR ResNets in 4 blocks: stem, then
  stages of 3 (or 5) residual units of 16, 32, 64 channels; label width 300.
* `"lstm"`, `"transformer"` -- the text classifiers of the ICLR 2022
  follow-up (`al_keras.models.text_backbones`): an embedding block, then 2
  bidirectional-LSTM or Transformer-encoder blocks over token ids
  `(sequence_length,)`; label width 128, tanh, cross-entropy `h_1`,
  bridges of one Dense layer on the masked mean of `s_i`.

The original code's L2 factors (VGG 1e-5, ResNets 1e-4) are training
settings: pass `kernel_regularizer=` (the configs do).
"""

import math
import numbers

import keras

from al_keras.core import keras_compat
from al_keras.core.al_model import ALModel
from al_keras.core.block import AssociatedBlock
from al_keras.core.bp_model import BPModel
from al_keras.core.labels import check_num_classes
from al_keras.core.sequence import carries_mask
from al_keras.models import text_backbones
from al_keras.models.backbones import BACKBONES as IMAGE_BACKBONES

BACKBONES = {**IMAGE_BACKBONES, **text_backbones.TEXT_BACKBONES}

METHODS = ("al", "bp")

# Options every model takes, by method, with their defaults.
_AL_OPTIONS = {
    "original": False,
    "activation": None,
    "bridge_multiplier": 5,
    "bridge_pool_size": 0,
    "output_loss": "mse",
    "loss_weights": None,
    "ae_lr_multiplier": 2.0,
    "kernel_regularizer": None,
    "sequence_pooling": None,
}
_BP_OPTIONS = {
    "bridge_multiplier": 5,
    "bridge_pool_size": 0,
    "head_activation": "relu",
    "kernel_regularizer": None,
    "sequence_pooling": None,
}


def names():
    """Names accepted by `get`."""
    return tuple(BACKBONES)


def associate(encoders, num_classes, label_units=256, activation=None,
              bridge_multiplier=5, output_loss="mse", loss_weights=None,
              ae_lr_multiplier=2.0, kernel_regularizer=None, input_shape=None,
              name=None, bridge_pool_size=0, sequence_pooling=None,
              preprocessor=None, original=False):
    """Makes an `ALModel` from your own Keras layers, one per block.

    Args:
        encoders: list of Keras layers or models, `f_1 ... f_L`.
        num_classes: int >= 2.
        label_units: int, or one int per block: the widths `n_i` of `t_i`.
        activation: of g, h, b: `"tanh"` (the default), `"sigmoid"` (the
            default with `original=True`), `"elu"`, `"relu"`.
        bridge_multiplier: hidden width of each bridge in units of `n_i`
            (5, as the original; 0 for a single Dense layer).
        output_loss: `"mse"` (default) or `"categorical_crossentropy"`
            (h_1 becomes a softmax).
        loss_weights: optional per-block weights of the local losses.
        ae_lr_multiplier: auto-encoder learning rate relative to the
            optimizer's (2.0).
        kernel_regularizer: optional regularizer of g, h and b.
        input_shape: optional input shape without the batch axis; if given,
            the model is built now.
        name: optional model name.
        bridge_pool_size: 0 (the original) flattens a convolutional `s_i`
            whole into its bridge; k > 0 average-pools it to k x k
            first, a light bridge (see `al_keras.Bridge`).
        sequence_pooling: None, or `"mean"` / `"last"` for a text model:
            the encoders are sequence layers (the first takes token ids,
            0 for padding), each wrapped in `al_keras.MaskedSequence`
            unless it is one already, so that the padding mask travels
            from block to block; each bridge pools its `s_i` over the
            tokens (see `al_keras.SequencePooling`).
        preprocessor: optional Keras layer from raw inputs to the model's
            inputs (e.g. an adapted `keras.layers.TextVectorization`): saved
            with the model, and the input of its exported signatures.
        original: False (default): the label side starts as a working
            auto-encoder (the tied initialisation of `AssociatedBlock`) and
            g, h, b use tanh, so the full path learns from the first steps
            at any usual learning rate.  True: the paper's code, He-normal
            g, h and b with sigmoid activations, for reproducing its
            figures (al_keras's default until December 2026; its full path
            lags its first exit by epochs, see docs/reproduction.md).

    Returns:
        An `ALModel`.

    Example:

    >>> model = al_keras.associate([enc1, enc2, enc3], num_classes=10,
    ...                            label_units=256)       # doctest: +SKIP
    """
    check_num_classes(num_classes)
    if not isinstance(original, bool):
        raise ValueError(f"original must be True or False, got {original!r}.")
    if activation is None:
        activation = "sigmoid" if original else "tanh"
    encoders = _check_encoders(encoders)
    if _is_int(label_units):
        label_units = [label_units] * len(encoders)
    if not isinstance(label_units, (list, tuple)) or not all(
            _is_int(u) and u >= 1 for u in label_units):
        raise ValueError(
            f"label_units must be an int >= 1, or one per block, got {label_units!r}.")
    label_units = [int(u) for u in label_units]
    if len(label_units) != len(encoders):
        raise ValueError(
            f"label_units has {len(label_units)} entries for {len(encoders)} "
            "encoders; give one int, or one per block."
        )
    if input_shape is not None:
        input_shape = check_input_shape(input_shape)
    if sequence_pooling is not None:
        from al_keras.core.sequence import MaskedSequence

        encoders = [e if carries_mask(e) else MaskedSequence(e, name=f"f_{i + 1}")
                    for i, e in enumerate(encoders)]
    blocks = []
    for i, (encoder, units) in enumerate(zip(encoders, label_units)):
        blocks.append(
            AssociatedBlock(
                encoder,
                label_units=units,
                target_units=num_classes if i == 0 else label_units[i - 1],
                activation=activation,
                decoder_activation=(
                    "softmax"
                    if i == 0 and output_loss == "categorical_crossentropy"
                    else None
                ),
                bridge_multiplier=bridge_multiplier,
                bridge_pool_size=bridge_pool_size,
                bridge_sequence_pooling=sequence_pooling,
                kernel_regularizer=kernel_regularizer,
                kernel_initializer="he_normal" if original else None,
                target_kind="one_hot" if i == 0 else "code",
                decoder_bias_initializer=(
                    keras.initializers.Constant(-math.log(num_classes - 1))
                    if i == 0 and output_loss == "mse" and activation == "sigmoid"
                    else "zeros"
                ),
                name=f"block_{i + 1}",
            )
        )
    model = ALModel(
        blocks,
        num_classes=num_classes,
        output_loss=output_loss,
        loss_weights=loss_weights,
        ae_lr_multiplier=ae_lr_multiplier,
        preprocessor=preprocessor,
        name=name,
    )
    if input_shape is not None:
        model.build((None,) + tuple(input_shape))
    return model


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_encoders(encoders):
    """`encoders` as a list of distinct Keras layers, else a one-line error."""
    if isinstance(encoders, keras.layers.Layer) or not isinstance(encoders, (list, tuple)):
        raise TypeError("encoders must be a list of Keras layers, one per block "
                        f"(f_1 ... f_L), got {type(encoders).__name__}.")
    encoders = list(encoders)
    for i, encoder in enumerate(encoders, start=1):
        if not isinstance(encoder, keras.layers.Layer):
            raise TypeError(f"Encoder {i} is a {type(encoder).__name__}; each encoder "
                            "must be a Keras layer (or model).")
        first = next(j for j, e in enumerate(encoders, start=1) if e is encoder)
        if first != i:
            raise ValueError(f"Encoders {first} and {i} are the same layer object; each "
                             "block needs its own layer (AL trains each block's apart).")
    return encoders


def check_input_shape(input_shape, name="input_shape"):
    """`input_shape` (one example's, no batch axis) as a tuple of ints >= 1
    (None for a size left open), else a one-line error."""
    if not isinstance(input_shape, (list, tuple)) or not input_shape or not all(
            d is None or (_is_int(d) and d >= 1) for d in input_shape):
        raise ValueError(
            f"{name} must be a non-empty tuple of ints >= 1, one example's shape "
            f"without the batch axis (e.g. (28, 28, 1)), got {input_shape!r}.")
    return tuple(None if d is None else int(d) for d in input_shape)


def all_option_names():
    """The names of every option of every model and method."""
    names_ = set(_AL_OPTIONS) | set(_BP_OPTIONS) | {"label_units"}
    for _, defaults, _ in BACKBONES.values():
        names_ |= set(defaults)
    return names_


def check_options(name, method, options):
    """Checks a model name, method and options without building anything.

    Returns:
        The options merged over their defaults.

    Raises:
        ValueError naming an unknown model, method or option.
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown model {name!r}; expected one of {names()}.")
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")
    _, backbone_defaults, default_label_units = BACKBONES[name]
    method_defaults = dict(_AL_OPTIONS if method == "al" else _BP_OPTIONS)
    if name in text_backbones.TEXT_BACKBONES:
        method_defaults.update({k: v for k, v in text_backbones.TEXT_METHOD_DEFAULTS.items()
                                if k in method_defaults})
    allowed = {**backbone_defaults, **method_defaults,
               "label_units": default_label_units}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for model {name!r} with method "
            f"{method!r}; allowed: {sorted(allowed)}."
        )
    settings = {**allowed, **options}
    for option, (minimum, meaning) in _OPTION_MINIMUMS.items():
        value = settings.get(option)
        whole = option in _INT_OPTIONS
        if option in allowed and value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool)
                and value >= minimum and (_is_int(value) or not whole)):
            raise ValueError(f"Option {option}={value!r} is invalid: {meaning}"
                             + (" (an int)" if whole and value == value
                                and value >= minimum else "") + ".")
    if method == "al" and not isinstance(settings["original"], bool):
        raise ValueError(f"Option original={settings['original']!r} is invalid: True "
                         "(the paper's settings) or False.")
    dropout = settings.get("dropout")
    if "dropout" in allowed and not (
            isinstance(dropout, (int, float)) and not isinstance(dropout, bool)
            and 0 <= dropout < 1):
        raise ValueError(f"Option dropout={dropout!r} is invalid: must be a fraction "
                         "in [0, 1).")
    for option in ("encoder_activation", "head_activation"):
        if option in allowed:
            _check_activation(option, settings[option])
    regularizer = settings.get("kernel_regularizer")
    if isinstance(regularizer, (int, float)) and not isinstance(regularizer, bool) and not (
            0 <= regularizer < math.inf):
        raise ValueError(f"Option kernel_regularizer={regularizer!r} is invalid: an L2 "
                         "factor must be a finite number >= 0 (or give a Keras "
                         "regularizer).")
    return settings


def _check_activation(option, value):
    try:
        keras.activations.get(value)
    except (ValueError, TypeError):
        raise ValueError(f"Option {option}={value!r} is invalid: not a Keras activation "
                         "(e.g. 'relu', 'elu', 'tanh').") from None


# Options that are counts or factors: option -> (smallest value, meaning).
_OPTION_MINIMUMS = {
    "num_blocks": (1, "an AL model needs num_blocks >= 1"),
    "hidden_units": (1, "must be >= 1"),
    "dense_units": (1, "must be >= 1"),
    "label_units": (1, "must be >= 1"),
    "bridge_multiplier": (0, "must be >= 0 (0: no hidden layer in the bridge)"),
    "bridge_pool_size": (0, "must be >= 0 (0: no pooling)"),
    "ae_lr_multiplier": (1e-12, "must be > 0"),
    "vocab_size": (2, "the number of token ids, >= 2"),
    "embedding_dim": (1, "must be >= 1"),
    "lstm_units": (1, "must be >= 1"),
    "num_heads": (1, "must be >= 1"),
    "intermediate_dim": (1, "must be >= 1"),
    "num_layers": (1, "a text model needs num_layers >= 1 sequence blocks"),
}
_INT_OPTIONS = {"num_blocks", "hidden_units", "dense_units", "label_units",
                "bridge_pool_size", "vocab_size", "embedding_dim", "lstm_units",
                "num_heads", "intermediate_dim", "num_layers"}


def get(name, *, input_shape=None, num_classes, method="al", sequence_length=None,
        preprocessor=None, **options):
    """Returns a built, compile-ready zoo model.

    Args:
        name: one of `names()`: `"mlp"`, `"cnn"`, `"vgg"`, `"resnet20"`,
            `"resnet32"`, `"lstm"`, `"transformer"`.
        input_shape: shape of one example, e.g. `(28, 28, 1)`; for the text
            models `(sequence_length,)`.
        sequence_length: the text models' alternative to `input_shape`.
        preprocessor: optional Keras layer from raw inputs to token ids
            (an adapted `keras.layers.TextVectorization`), saved with the
            model; its `export()` then serves raw strings.
        num_classes: int >= 2.
        method: `"al"` (an `ALModel`) or `"bp"` (its `BPModel` twin).
        **options: the backbone's (`mlp`: `hidden_units`, `num_blocks`,
            `encoder_activation`; `cnn`: `filters`, `encoder_activation`;
            `vgg`: `encoder_activation`, `dense_units`; `resnet20/32`:
            `depth`, `encoder_activation`; `lstm`: `vocab_size` (required),
            `embedding_dim`, `lstm_units`, `num_layers`, `dropout`;
            `transformer`: `vocab_size`, `embedding_dim`, `num_heads`,
            `intermediate_dim`, `num_layers`, `dropout`),
            `label_units`, `sequence_pooling` (text: `"mean"` or `"last"`),
            and the method's (`al`: `original` (the paper's settings, see
            `associate`), `activation`,
            `bridge_multiplier`, `bridge_pool_size`, `output_loss`,
            `loss_weights`, `ae_lr_multiplier`, `kernel_regularizer` as an
            L2 factor or regularizer; `bp`: `bridge_multiplier`,
            `bridge_pool_size` (of its head, which mirrors the last bridge),
            `head_activation`, `kernel_regularizer`).  An unknown option raises `ValueError`.

    Example:

    >>> model = al_keras.models.get("cnn", input_shape=(28, 28, 1),
    ...                             num_classes=10, method="al")
    """
    settings = check_options(name, method, options)
    check_num_classes(num_classes)
    if sequence_length is not None and not (_is_int(sequence_length)
                                            and sequence_length >= 1):
        raise ValueError(f"models.get({name!r}): sequence_length must be an int >= 1 "
                         f"(tokens per text), got {sequence_length!r}.")
    if input_shape is None:
        if sequence_length is None:
            raise ValueError(f"models.get({name!r}) needs input_shape=... (or, for a "
                             "text model, sequence_length=...).")
        input_shape = (sequence_length,)
    input_shape = check_input_shape(input_shape)
    if sequence_length is not None and input_shape != (sequence_length,):
        raise ValueError(f"input_shape={input_shape} contradicts "
                         f"sequence_length={sequence_length}; give one of them.")
    backbone_defaults = BACKBONES[name][1]
    make_encoders = BACKBONES[name][0]
    regularizer = settings["kernel_regularizer"]
    if isinstance(regularizer, (int, float)) and not isinstance(regularizer, bool):
        regularizer = keras.regularizers.L2(regularizer) if regularizer else None
    input_shape = tuple(input_shape)
    encoders = make_encoders(
        input_shape,
        kernel_regularizer=regularizer,
        **{k: settings[k] for k in backbone_defaults},
    )
    model_name = f"{name}_{method}"
    if method == "al":
        return associate(
            encoders,
            num_classes,
            label_units=settings["label_units"],
            activation=settings["activation"],
            bridge_multiplier=settings["bridge_multiplier"],
            bridge_pool_size=settings["bridge_pool_size"],
            output_loss=settings["output_loss"],
            loss_weights=settings["loss_weights"],
            ae_lr_multiplier=settings["ae_lr_multiplier"],
            kernel_regularizer=regularizer,
            original=settings["original"],
            input_shape=input_shape,
            name=model_name,
            sequence_pooling=settings["sequence_pooling"],
            preprocessor=preprocessor,
        )
    model = BPModel(
        encoders,
        num_classes,
        label_units=settings["label_units"],
        bridge_multiplier=settings["bridge_multiplier"],
        bridge_pool_size=settings["bridge_pool_size"],
        head_activation=settings["head_activation"],
        kernel_regularizer=regularizer,
        name=model_name,
        sequence_pooling=settings["sequence_pooling"],
        preprocessor=preprocessor,
    )
    model.build((None,) + input_shape)
    return model


def bp_twin(al_model, head_activation="relu", input_shape=None):
    """A `BPModel` with fresh copies of `al_model`'s encoders and mirrored head.

    The copies are rebuilt from the encoders' configs, so they start from new
    random weights, as a fair side-by-side baseline should.
    """
    encoders = [
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(b.encoder)
        )
        for b in al_model.blocks
    ]
    model = BPModel(
        encoders,
        al_model.num_classes,
        label_units=[b.label_units for b in al_model.blocks],
        bridge_multiplier=al_model.blocks[-1].bridge_multiplier,
        bridge_pool_size=al_model.blocks[-1].bridge_pool_size,
        head_activation=head_activation,
        kernel_regularizer=al_model.blocks[-1].kernel_regularizer,
        name=f"{al_model.name}_bp_twin",
        sequence_pooling=al_model.blocks[-1].bridge_sequence_pooling,
        preprocessor=al_model.preprocessor,
    )
    built_shape = keras_compat.built_input_shape(al_model)
    if input_shape is not None:
        model.build((None,) + tuple(input_shape))
    elif built_shape:
        model.build(built_shape)
    return model
