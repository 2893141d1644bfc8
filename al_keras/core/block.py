"""`AssociatedBlock`: one block of an AL network, its f, g, b and h together."""

import keras

from al_keras.core.layers import (
    _PACKAGE,
    Bridge,
    LabelDecoder,
    LabelEncoder,
    _check_positive_int,
    check_activation,
)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AssociatedBlock(keras.layers.Layer):
    """One block of an Associated Learning network: its f, g, b and h.

    The block owns an encoder `f` (any Keras layer, e.g. a
    `keras.Sequential` of convolutions), and builds the label encoder `g`,
    bridge `b` and label decoder `h` around it:

    * `s_i = f(s_{i-1})`, the encoder of the input side;
    * `t_i = g(t_{i-1})`, with `t_{i-1}` of width `target_units`;
    * `b(s_i)` approximates `t_i` (width `label_units`);
    * `h(t_i)` reconstructs `t_{i-1}` (width `target_units`).

    Calling the block runs the encoder only: `block(s_{i-1}) == s_i`, so a
    list of blocks reads like the backbone it wraps.  The other parts are
    reached as attributes (`label_encoder`, `bridge`, `label_decoder`).

    Args:
        encoder: a Keras layer, `f_i`.
        label_units: int, width `n` of `t_i`.
        target_units: int, width of `t_{i-1}`: the number of classes for the
            first block, the previous block's `label_units` otherwise.
        activation: activation of g, h and b: `"sigmoid"` (default, as the
            original code), `"tanh"`, `"elu"` or `"relu"`.
        decoder_activation: activation of h, if it should differ from
            `activation` (e.g. `"softmax"` for a cross-entropy `h_1`).
        bridge_multiplier: hidden width of the bridge in units of
            `label_units` (5, as the original; 0 drops the hidden layer).
        bridge_pool_size: the bridge's `pool_size`: 0 (the original)
            flattens a convolutional `s_i` whole, k > 0 average-pools it to
            to k x k first (see `FeaturePooling`).
        bridge_sequence_pooling: None, or `"mean"` / `"last"` for a text
            block, whose `s_i` is a masked sequence: the bridge pools it
            over the tokens first (see `SequencePooling`).
        kernel_initializer: initializer of g, h and b, default `"he_normal"`.
        kernel_regularizer: optional regularizer of g, h and b.
        decoder_bias_initializer: initializer of h's bias (default zeros).
            `al_keras.associate` gives a sigmoid `h_1` trained with MSE the
            bias `-log(num_classes - 1)`, so that it starts at the class
            prior: from zero bias, Adam's first steps push every output far
            into the flat tail of the sigmoid (MSE against one-hot targets
            first drives all outputs towards 0), and an output unit can stay
            there for many epochs, its class never predicted.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: the block's input `s_{i-1}`.
        training: bool, passed to the encoder.

    Example:

    >>> block = AssociatedBlock(keras.layers.Dense(32, "elu"), label_units=16,
    ...                         target_units=10)
    >>> block(np.zeros((4, 64), "float32")).shape
    TensorShape([4, 32])

    Reference:
        Kao & Chen, Associated Learning: Decomposing End-to-end
        Backpropagation based on Auto-encoders and Target Propagation,
        Neural Computation 33(1), 2021.
    """

    def __init__(
        self,
        encoder,
        label_units,
        target_units,
        activation="sigmoid",
        decoder_activation=None,
        bridge_multiplier=5,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        decoder_bias_initializer="zeros",
        bridge_pool_size=0,
        bridge_sequence_pooling=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        if not isinstance(encoder, keras.layers.Layer):
            raise TypeError(
                "`encoder` must be a Keras layer (or model), got "
                f"{type(encoder).__name__}."
            )
        self.encoder = encoder
        self.label_units = _check_positive_int(label_units, "label_units")
        self.target_units = _check_positive_int(target_units, "target_units")
        self.activation = check_activation(activation)
        self.decoder_activation = decoder_activation
        self.decoder_bias_initializer = keras.initializers.get(
            decoder_bias_initializer
        )
        self.bridge_multiplier = bridge_multiplier
        self.bridge_pool_size = bridge_pool_size
        self.bridge_sequence_pooling = bridge_sequence_pooling
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        common = dict(
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
        )
        self.label_encoder = LabelEncoder(
            label_units, activation=activation, name="label_encoder", **common
        )
        self.bridge = Bridge(
            label_units,
            hidden_multiplier=bridge_multiplier,
            pool_size=bridge_pool_size,
            sequence_pooling=bridge_sequence_pooling,
            activation=activation,
            name="bridge",
            **common,
        )
        self.label_decoder = LabelDecoder(
            target_units,
            activation=decoder_activation or activation,
            bias_initializer=self.decoder_bias_initializer,
            name="label_decoder",
            **common,
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if not self.encoder.built:
            self.encoder.build(input_shape)
        encoded = self.encoder.compute_output_spec(
            keras.KerasTensor(input_shape, dtype=self.compute_dtype)
        )
        self.bridge.build(encoded.shape)
        self.label_encoder.build((None, self.target_units))
        self.label_decoder.build((None, self.label_units))
        self.built = True

    def call(self, inputs, training=None):
        return self.encoder(inputs, training=training)

    def compute_output_shape(self, input_shape):
        return self.encoder.compute_output_spec(
            keras.KerasTensor(tuple(input_shape), dtype=self.compute_dtype)
        ).shape

    @property
    def input_side_variables(self):
        """Trainable variables of f and b: trained by the associated loss."""
        return self.encoder.trainable_variables + self.bridge.trainable_variables

    @property
    def label_side_variables(self):
        """Trainable variables of g and h: trained by the auto-encoder loss."""
        return (
            self.label_encoder.trainable_variables
            + self.label_decoder.trainable_variables
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            label_units=self.label_units,
            target_units=self.target_units,
            activation=self.activation,
            decoder_activation=self.decoder_activation,
            bridge_multiplier=self.bridge_multiplier,
            kernel_initializer=keras.initializers.serialize(
                self.kernel_initializer
            ),
            kernel_regularizer=keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            decoder_bias_initializer=keras.initializers.serialize(
                self.decoder_bias_initializer
            ),
            bridge_pool_size=self.bridge_pool_size,
            bridge_sequence_pooling=self.bridge_sequence_pooling,
        )
        return config
