"""The encoders `f_1 ... f_L` of the paper's networks, one Keras layer per block.

Each function takes the input shape (without the batch axis) and returns a
list of fresh Keras layers, split into blocks as the original code
(github SamYWK/Associated_Learning) split them.  `BACKBONES` maps the zoo
names to the function, its options with their defaults, and the default
label width `n` of the AL model.
"""

import keras

_PACKAGE = "al_keras"


def _regularizer(value):
    return keras.regularizers.get(value)


def _dense(units, activation, regularizer):
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer="he_normal",
        kernel_regularizer=_regularizer(regularizer),
    )


def _conv_bn(filters, activation, regularizer, strides=1):
    """3x3 convolution, batch normalization, activation (the original's)."""
    return [
        keras.layers.Conv2D(
            filters, 3, strides=strides, padding="same", use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=_regularizer(regularizer),
        ),
        keras.layers.BatchNormalization(),
        keras.layers.Activation(activation),
    ]


def _image_prefix(input_shape, model):
    """A Reshape adding a channel axis to (H, W) inputs; [] for (H, W, C)."""
    if len(input_shape) == 2:
        return [keras.layers.Reshape(tuple(input_shape) + (1,))]
    if len(input_shape) == 3:
        return []
    raise ValueError(
        f"The {model} model needs image inputs (H, W) or (H, W, C); got input "
        f"shape {tuple(input_shape)}."
    )


def mlp_encoders(input_shape, hidden_units=1024, num_blocks=2,
                 encoder_activation="elu", kernel_regularizer=None):
    """The MLP: `num_blocks` blocks of Dense(`hidden_units`); the first flattens."""
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
    """The CNN: per block two 3x3 convolutions, `filters[i]` wide.

    Every second block (2 and 4 in the original) ends with stride 2.
    """
    prefix = _image_prefix(input_shape, "cnn")
    if not filters:
        raise ValueError("filters must name at least one block's width.")
    encoders = []
    for i, width in enumerate(filters, start=1):
        layers = list(prefix) if i == 1 else []
        for j in range(2):
            layers.append(
                keras.layers.Conv2D(
                    width, 3,
                    strides=2 if (j == 1 and i % 2 == 0) else 1,
                    padding="same",
                    activation=encoder_activation,
                    kernel_initializer="he_normal",
                    kernel_regularizer=_regularizer(kernel_regularizer),
                )
            )
        encoders.append(keras.Sequential(layers, name=f"f_{i}"))
    return encoders


def vgg_encoders(input_shape, encoder_activation="elu", dense_units=1024,
                 kernel_regularizer=None):
    """The VGG of the paper's CIFAR experiments, in its 4 AL blocks.

    Blocks: [c128, c256, pool], [c256, c512, pool], [c512, pool, c512, pool],
    [Flatten, Dense(`dense_units`), Dense(`dense_units`)]; each `c` is a 3x3
    convolution, batch normalization and the activation; pools are 2x2 max.
    """
    prefix = _image_prefix(input_shape, "vgg")
    if min(input_shape[:2]) < 16:
        raise ValueError(
            "The vgg model pools 4 times by 2: its images must be at least "
            f"16x16, got input shape {tuple(input_shape)}."
        )
    act, reg = encoder_activation, kernel_regularizer
    pool = keras.layers.MaxPooling2D
    block_1 = prefix + _conv_bn(128, act, reg) + _conv_bn(256, act, reg) + [pool()]
    block_2 = _conv_bn(256, act, reg) + _conv_bn(512, act, reg) + [pool()]
    block_3 = _conv_bn(512, act, reg) + [pool()] + _conv_bn(512, act, reg) + [pool()]
    block_4 = [keras.layers.Flatten(), _dense(dense_units, act, reg),
               _dense(dense_units, act, reg)]
    return [
        keras.Sequential(layers, name=f"f_{i}")
        for i, layers in enumerate([block_1, block_2, block_3, block_4], start=1)
    ]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResidualUnit(keras.layers.Layer):
    """The residual unit of the paper's ResNets (He et al.'s CIFAR design).

    `act(shortcut(x) + act(bn(conv(act(bn(conv(x)))))))`, 3x3 convolutions;
    the shortcut is the identity, or a strided 1x1 convolution when
    `strides > 1` or the width changes.  (As in the original code, the second
    convolution is activated before the addition too.)

    Args:
        filters: int, output channels.
        strides: int, stride of the first convolution and of the shortcut.
        activation: activation, `"elu"` in the AL models.
        kernel_regularizer: optional regularizer of the convolutions.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: `(batch, H, W, C)`.
        training: bool, for batch normalization.

    Example:

    >>> ResidualUnit(32, strides=2)(np.zeros((1, 8, 8, 16), "float32")).shape
    TensorShape([1, 4, 4, 32])

    Reference:
        He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition,
        CVPR 2016.
    """

    def __init__(self, filters, strides=1, activation="elu",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.activation = activation
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.first = keras.Sequential(
            _conv_bn(filters, activation, self.kernel_regularizer, strides),
            name="first",
        )
        self.second = keras.Sequential(
            _conv_bn(filters, activation, self.kernel_regularizer), name="second"
        )
        self.projection = None
        self.output_activation = keras.layers.Activation(activation)

    def build(self, input_shape):
        self.first.build(input_shape)
        self.second.build(self.first.compute_output_shape(input_shape))
        if self.strides != 1 or input_shape[-1] != self.filters:
            self.projection = keras.layers.Conv2D(
                self.filters, 1, strides=self.strides, padding="same",
                kernel_initializer="he_normal",
                kernel_regularizer=self.kernel_regularizer, name="projection",
            )
            self.projection.build(input_shape)

    def call(self, inputs, training=None):
        x = self.second(self.first(inputs, training=training), training=training)
        shortcut = inputs if self.projection is None else self.projection(inputs)
        return self.output_activation(x + shortcut)

    def compute_output_shape(self, input_shape):
        return self.first.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            activation=self.activation,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config


def resnet_encoders(input_shape, depth=20, encoder_activation="elu",
                    kernel_regularizer=None):
    """ResNet-`depth` for CIFAR (depth = 6k + 2), in its 4 AL blocks.

    Blocks: the stem (3x3 convolution of 16, batch normalization,
    activation), then stages 1-3 of k residual units with 16, 32 and 64
    channels, stages 2 and 3 starting with stride 2.  ResNet-20 has k = 3,
    ResNet-32 k = 5.
    """
    prefix = _image_prefix(input_shape, f"resnet{depth}")
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"ResNet depth must be 6k + 2 (20, 32, ...), got {depth}.")
    units = (depth - 2) // 6
    encoders = [keras.Sequential(
        prefix + _conv_bn(16, encoder_activation, kernel_regularizer), name="f_1")]
    for stage, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=2):
        encoders.append(keras.Sequential(
            [ResidualUnit(filters, stride if u == 0 else 1, encoder_activation,
                          kernel_regularizer) for u in range(units)],
            name=f"f_{stage}",
        ))
    return encoders


# name -> (encoder function, its options and defaults, default label width).
BACKBONES = {
    "mlp": (mlp_encoders, {"hidden_units": 1024, "num_blocks": 2,
                           "encoder_activation": "elu"}, 1024),
    "cnn": (cnn_encoders, {"filters": (32, 32, 64, 64),
                           "encoder_activation": "elu"}, 256),
    "vgg": (vgg_encoders, {"encoder_activation": "elu", "dense_units": 1024}, 300),
    "resnet20": (resnet_encoders, {"depth": 20, "encoder_activation": "elu"}, 300),
    "resnet32": (resnet_encoders, {"depth": 32, "encoder_activation": "elu"}, 300),
}
