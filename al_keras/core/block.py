"""`AssociatedBlock`: one block of an AL network, its f, g, b and h together."""

import keras

from al_keras.core import keras_compat
from al_keras.core.layers import (
    _PACKAGE,
    Bridge,
    LabelDecoder,
    LabelEncoder,
    _check_positive_int,
    check_activation,
)


class _Tied(keras.initializers.Initializer):
    """An initializer whose values a method of the block computes."""

    def __init__(self, compute):
        self.compute = compute

    def __call__(self, shape, dtype=None):
        return keras.ops.cast(self.compute(shape, dtype), dtype or "float32")


TARGET_KINDS = ("code", "one_hot")
# The gain of g's orthogonal kernel in the tied initialisation, by activation.
TIED_GAINS = {"tanh": 2.0, "sigmoid": 4.0, "elu": 2.0, "relu": 2.0}


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
        activation: activation of g, h and b: `"tanh"` (default),
            `"sigmoid"` (the original code's), `"elu"` or `"relu"`.
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
        kernel_initializer: None (default) for the *tied* initialisation
            (below), or one initializer of g, h and b alike: `"he_normal"`
            is the original code's.
        target_kind: `"code"` (default): `t_{i-1}` is the previous block's
            label code; `"one_hot"`: the labels (the first block).  The tied
            initialisation centres `g` on the middle of its input's range.
        kernel_regularizer: optional regularizer of g, h and b.
        decoder_bias_initializer: initializer of h's bias (default zeros).
            `al_keras.associate` gives a sigmoid `h_1` trained with MSE the
            bias `-log(num_classes - 1)`, so that it starts at the class
            prior: from zero bias, Adam's first steps push every output far
            into the flat tail of the sigmoid (MSE against one-hot targets
            first drives all outputs towards 0), and an output unit can stay
            there for many epochs, its class never predicted.
        **kwargs: base layer keyword arguments.

    The tied initialisation (`kernel_initializer=None`) makes the label side
    an auto-encoder that already works before any training step, so the
    full path `b_L -> h_L ... h_1` decodes what the bridges learn from the
    first batches on:

    * `g`: an orthogonal kernel (gain 2; 4 for a sigmoid, whose slope is a
      quarter of tanh's), so the codes `t_i` of different classes are
      spread apart, and a bias that centres it on its input: a sigmoid
      code lies around 0.5, not 0;
    * `h`: the transpose of g's kernel, centred alike, so `h(g(t))` points
      back at `t`'s class;
    * `b`: Glorot-uniform, which keeps a bounded activation out of its
      flat tails.

    With He-normal `g` and `h` (the original code) the label codes of the
    classes start close together, and `h`'s random kernel decodes them to
    arbitrary classes: at Adam's 2e-4 the full path stays at chance for
    hundreds of steps (docs/reproduction.md, "Learning from the first
    steps").

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
        activation="tanh",
        decoder_activation=None,
        bridge_multiplier=5,
        kernel_initializer=None,
        kernel_regularizer=None,
        decoder_bias_initializer="zeros",
        bridge_pool_size=0,
        bridge_sequence_pooling=None,
        target_kind="code",
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
        if target_kind not in TARGET_KINDS:
            raise ValueError(f"target_kind must be one of {TARGET_KINDS}, got "
                             f"{target_kind!r}.")
        self.target_kind = target_kind
        self.kernel_initializer = (None if kernel_initializer is None else
                                   keras.initializers.get(kernel_initializer))
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        tied = self.kernel_initializer is None
        # Made now: it draws its seed as "he_normal" did (set_random_seed
        # decides it).
        self._orthogonal = (keras.initializers.Orthogonal(
            gain=TIED_GAINS[self.activation]) if tied else None)
        self._tied_kernel = None  # Drawn when g is built.
        common = dict(kernel_regularizer=self.kernel_regularizer,
                      dtype=self.dtype_policy)
        self.label_encoder = LabelEncoder(
            label_units, activation=activation, name="label_encoder",
            kernel_initializer=(_Tied(self._encoder_kernel) if tied
                                else self.kernel_initializer),
            bias_initializer=(
                _Tied(self._centred_encoder_bias) if tied else "zeros"),
            **common,
        )
        self.bridge = Bridge(
            label_units,
            hidden_multiplier=bridge_multiplier,
            pool_size=bridge_pool_size,
            sequence_pooling=bridge_sequence_pooling,
            activation=activation,
            name="bridge",
            kernel_initializer="glorot_uniform" if tied else self.kernel_initializer,
            **common,
        )
        self.label_decoder = LabelDecoder(
            target_units,
            activation=decoder_activation or activation,
            bias_initializer=(_Tied(self._centred_decoder_bias) if tied
                              else self.decoder_bias_initializer),
            name="label_decoder",
            kernel_initializer=(_Tied(self._transposed_encoder_kernel) if tied
                                else self.kernel_initializer),
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
        self._tied_kernel = None
        self.built = True

    # The tied initialisation (see the class doc): g's kernel is drawn once,
    # when g is built (before h; Keras creates a kernel before its bias),
    # and kept until the block is built for the initial values computed
    # from it.
    def _middle(self):
        return 0.5 if self.activation == "sigmoid" else 0.0  # Code's centre.

    def _encoder_kernel(self, shape=None, dtype=None):
        if keras_compat.in_stateless_scope():
            # A symbolic build (Keras' JAX fit) reads the initial values of
            # variables not yet made, for their shapes only: not kept.
            return self._orthogonal((self.target_units, self.label_units))
        if self._tied_kernel is None:
            self._tied_kernel = self._orthogonal((self.target_units, self.label_units))
        return self._tied_kernel

    def _centred_encoder_bias(self, shape, dtype):
        middle = self._middle() if self.target_kind == "code" else 0.0
        return -middle * keras.ops.sum(self._encoder_kernel(), axis=0)

    def _transposed_encoder_kernel(self, shape, dtype):
        return keras.ops.transpose(self._encoder_kernel())

    def _centred_decoder_bias(self, shape, dtype):
        prior = self.decoder_bias_initializer(shape, dtype=dtype)
        return prior - self._middle() * keras.ops.sum(self._encoder_kernel(), axis=1)

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
            kernel_initializer=(None if self.kernel_initializer is None else
                                keras.initializers.serialize(self.kernel_initializer)),
            kernel_regularizer=keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            decoder_bias_initializer=keras.initializers.serialize(
                self.decoder_bias_initializer
            ),
            bridge_pool_size=self.bridge_pool_size,
            bridge_sequence_pooling=self.bridge_sequence_pooling,
            target_kind=self.target_kind,
        )
        return config
