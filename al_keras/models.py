"""Model zoo: the original paper's networks as AL models and BP twins.

`get(name, input_shape=..., num_classes=..., method="al" | "bp", **options)`
returns a built, compile-ready model.  Backbones:

* `"mlp"` -- the original MNIST MLP: `num_blocks` (2) blocks of
  Dense(`hidden_units`=1024, ELU); label width `label_units` (1024).
* `"cnn"` -- the original CNN: 4 blocks of two 3x3 convolutions with
  `filters` = (32, 32, 64, 64), stride 2 at the end of blocks 2 and 4, ELU;
  label width `label_units` (256).
"""

import math

import keras

from al_keras.al_model import ALModel
from al_keras.bp_model import BPModel
from al_keras.labels import check_num_classes
from al_keras.layers import AssociatedBlock

METHODS = ("al", "bp")

# Options every model takes, by method, with their defaults.
_AL_OPTIONS = {
    "activation": "sigmoid",
    "bridge_multiplier": 5,
    "output_loss": "mse",
    "loss_weights": None,
    "ae_lr_multiplier": 2.0,
    "kernel_regularizer": None,
}
_BP_OPTIONS = {
    "bridge_multiplier": 5,
    "head_activation": "relu",
    "kernel_regularizer": None,
}


def _dense(units, activation, regularizer, **kwargs):
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.get(regularizer),
        **kwargs,
    )


def mlp_encoders(input_shape, hidden_units=1024, num_blocks=2,
                 encoder_activation="elu", kernel_regularizer=None):
    """The MLP backbone: `num_blocks` Dense layers (the first flattens)."""
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}.")
    encoders = []
    for i in range(1, num_blocks + 1):
        layers = [keras.layers.Flatten()] if i == 1 and len(input_shape) > 1 else []
        layers.append(_dense(hidden_units, encoder_activation, kernel_regularizer))
        encoders.append(keras.Sequential(layers, name=f"f_{i}"))
    return encoders


def cnn_encoders(input_shape, filters=(32, 32, 64, 64), encoder_activation="elu",
                 kernel_regularizer=None):
    """The CNN backbone: per block two 3x3 convolutions, `filters[i]` wide.

    Blocks 2 and 4 (every second block) end with stride 2.  A 2-D input
    shape (H, W) gets a channel axis.
    """
    if len(input_shape) not in (2, 3):
        raise ValueError(
            "The cnn model needs image inputs (H, W) or (H, W, C); got input "
            f"shape {tuple(input_shape)}."
        )
    if not filters:
        raise ValueError("filters must name at least one block's width.")
    encoders = []
    for i, width in enumerate(filters, start=1):
        layers = []
        if i == 1 and len(input_shape) == 2:
            layers.append(keras.layers.Reshape(tuple(input_shape) + (1,)))
        for j in range(2):
            layers.append(
                keras.layers.Conv2D(
                    width,
                    3,
                    strides=2 if (j == 1 and i % 2 == 0) else 1,
                    padding="same",
                    activation=encoder_activation,
                    kernel_initializer="he_normal",
                    kernel_regularizer=keras.regularizers.get(kernel_regularizer),
                )
            )
        encoders.append(keras.Sequential(layers, name=f"f_{i}"))
    return encoders


_BACKBONES = {
    "mlp": (mlp_encoders, {"hidden_units": 1024, "num_blocks": 2,
                           "encoder_activation": "elu"}, 1024),
    "cnn": (cnn_encoders, {"filters": (32, 32, 64, 64),
                           "encoder_activation": "elu"}, 256),
}


def names():
    """Names accepted by `get`."""
    return tuple(_BACKBONES)


def associate(encoders, num_classes, label_units=256, activation="sigmoid",
              bridge_multiplier=5, output_loss="mse", loss_weights=None,
              ae_lr_multiplier=2.0, kernel_regularizer=None, input_shape=None,
              name=None):
    """Makes an `ALModel` from your own Keras layers, one per block.

    Args:
        encoders: list of Keras layers or models, `f_1 ... f_L`.
        num_classes: int >= 2.
        label_units: int, or one int per block: the widths `n_i` of `t_i`.
        activation: of g, h, b: `"sigmoid"` (default), `"tanh"`, `"elu"`,
            `"relu"`.
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

    Returns:
        An `ALModel`.

    Example:

    >>> model = al_keras.associate([enc1, enc2, enc3], num_classes=10,
    ...                            label_units=256)       # doctest: +SKIP
    """
    check_num_classes(num_classes)
    encoders = list(encoders)
    if isinstance(label_units, int):
        label_units = [label_units] * len(encoders)
    if len(label_units) != len(encoders):
        raise ValueError(
            f"label_units has {len(label_units)} entries for {len(encoders)} "
            "encoders; give one int, or one per block."
        )
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
                kernel_regularizer=kernel_regularizer,
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
        name=name,
    )
    if input_shape is not None:
        model.build((None,) + tuple(input_shape))
    return model


def get(name, *, input_shape, num_classes, method="al", **options):
    """Returns a built, compile-ready zoo model.

    Args:
        name: `"mlp"` or `"cnn"`.
        input_shape: shape of one example, e.g. `(28, 28, 1)`.
        num_classes: int >= 2.
        method: `"al"` (an `ALModel`) or `"bp"` (its `BPModel` twin).
        **options: the backbone's (`mlp`: `hidden_units`, `num_blocks`,
            `encoder_activation`; `cnn`: `filters`, `encoder_activation`),
            `label_units`, and the method's (`al`: `activation`,
            `bridge_multiplier`, `output_loss`, `loss_weights`,
            `ae_lr_multiplier`, `kernel_regularizer` as an L2 factor or
            regularizer; `bp`: `bridge_multiplier`, `head_activation`,
            `kernel_regularizer`).  An unknown option raises `ValueError`.

    Example:

    >>> model = al_keras.models.get("cnn", input_shape=(28, 28, 1),
    ...                             num_classes=10, method="al")
    """
    if name not in _BACKBONES:
        raise ValueError(f"Unknown model {name!r}; expected one of {names()}.")
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")
    make_encoders, backbone_defaults, default_label_units = _BACKBONES[name]
    method_defaults = _AL_OPTIONS if method == "al" else _BP_OPTIONS
    allowed = {**backbone_defaults, **method_defaults,
               "label_units": default_label_units}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for model {name!r} with method "
            f"{method!r}; allowed: {sorted(allowed)}."
        )
    settings = {**allowed, **options}
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
            output_loss=settings["output_loss"],
            loss_weights=settings["loss_weights"],
            ae_lr_multiplier=settings["ae_lr_multiplier"],
            kernel_regularizer=regularizer,
            input_shape=input_shape,
            name=model_name,
        )
    model = BPModel(
        encoders,
        num_classes,
        label_units=settings["label_units"],
        bridge_multiplier=settings["bridge_multiplier"],
        head_activation=settings["head_activation"],
        kernel_regularizer=regularizer,
        name=model_name,
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
        head_activation=head_activation,
        kernel_regularizer=al_model.blocks[-1].kernel_regularizer,
        name=f"{al_model.name}_bp_twin",
    )
    shapes = getattr(al_model, "_build_shapes_dict", None)
    if input_shape is not None:
        model.build((None,) + tuple(input_shape))
    elif shapes:
        model.build(next(iter(shapes.values())))
    return model
