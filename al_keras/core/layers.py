"""Keras layers for the parts of an Associated Learning block.

A block i of an AL network has four parts (Kao & Chen, 2021):

* ``f_i`` -- the *encoder* of the input, any Keras layer;
* ``g_i`` -- the :class:`LabelEncoder`, which encodes the label side
  ``t_{i-1}`` into ``t_i``;
* ``b_i`` -- the :class:`Bridge`, which maps ``s_i = f_i(s_{i-1})`` into
  t-space;
* ``h_i`` -- the :class:`LabelDecoder`, which decodes ``t_i`` back to
  ``t_{i-1}``.

:class:`al_keras.AssociatedBlock` (``block.py``) owns the four parts of one
block and builds them with the right shapes.  The training logic
(stop-gradients, one gradient per local loss) lives in ``step.py`` and the
trainers of :class:`al_keras.ALModel` (``trainers/``).
"""

import keras
import numpy as np

_PACKAGE = "al_keras"
ACTIVATIONS = ("sigmoid", "tanh", "elu", "relu")


def check_activation(activation, allowed=ACTIVATIONS):
    """Returns `activation` if it is in `allowed`, else raises ValueError."""
    if activation not in allowed:
        raise ValueError(
            f"Unknown activation {activation!r}; expected one of {allowed}."
        )
    return activation


def _check_positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{what}` must be a positive int, got {value!r}.")
    return value


class _LabelDense(keras.layers.Layer):
    """A dense layer of the label side; base of LabelEncoder/LabelDecoder."""

    allowed_activations = ACTIVATIONS

    def __init__(
        self,
        units,
        activation="sigmoid",
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _check_positive_int(units, "units")
        self.activation = check_activation(activation, self.allowed_activations)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.dense = keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name="dense",
        )

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.built = True

    def call(self, inputs):
        return self.dense(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation,
            kernel_initializer=keras.initializers.serialize(
                self.kernel_initializer
            ),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(
                self.kernel_regularizer
            ),
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LabelEncoder(_LabelDense):
    """The label encoder `g_i` of an AL block: `t_i = g_i(t_{i-1})`.

    A dense layer with a bounded activation (sigmoid in the original code)
    and He-normal initialisation, as in Kao & Chen's reference code.

    Args:
        units: int, width of `t_i`.
        activation: one of `"sigmoid"` (default), `"tanh"`, `"elu"`, `"relu"`.
        kernel_initializer: initializer of the kernel, default `"he_normal"`.
        bias_initializer: initializer of the bias, default `"zeros"`.
        kernel_regularizer: optional regularizer of the kernel.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor `(batch, width of t_{i-1})`.

    Example:

    >>> g = LabelEncoder(16)
    >>> g(np.eye(10, dtype="float32")).shape
    TensorShape([10, 16])

    Reference:
        Kao & Chen, Associated Learning, Neural Computation 33(1), 2021.
    """


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LabelDecoder(_LabelDense):
    """The label decoder `h_i` of an AL block: `t_{i-1} ~ h_i(t_i)`.

    `h_1` decodes to the classes.  With `activation="softmax"` (used by
    `ALModel(output_loss="categorical_crossentropy")` for `h_1`) it outputs
    class probabilities.

    Args:
        units: int, width of `t_{i-1}` (the number of classes for `h_1`).
        activation: `"sigmoid"` (default), `"tanh"`, `"elu"`, `"relu"` or
            `"softmax"`.
        kernel_initializer: initializer of the kernel, default `"he_normal"`.
        bias_initializer: initializer of the bias, default `"zeros"`.
            `al_keras.associate` starts a sigmoid `h_1` trained with MSE at
            the class prior, `sigmoid(b) = 1 / num_classes`: see
            `AssociatedBlock`.
        kernel_regularizer: optional regularizer of the kernel.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: float tensor `(batch, width of t_i)`.

    Example:

    >>> h = LabelDecoder(10)
    >>> h(np.zeros((4, 16), "float32")).shape
    TensorShape([4, 10])

    Reference:
        Kao & Chen, Associated Learning, Neural Computation 33(1), 2021.
    """

    allowed_activations = ACTIVATIONS + ("softmax",)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeaturePooling(keras.layers.Layer):
    """Adaptive average pooling of a feature map to `pool_size x pool_size`.

    The pooling of light bridges (and of the BP twin's matching head): a map
    `(batch, H, W, C)` becomes `(batch, k, k, C)`, `k = pool_size` (or `H`,
    `W` where they are smaller), output row i averaging input rows
    `floor(i * H / k)` to `ceil((i + 1) * H / k)` (columns alike): windows
    that cover every row and column, overlapping by one where `k` does not
    divide `H` (7 to 2: rows 0-3 and 3-6).  `pool_size=1` is global average
    pooling.  Inputs of another rank pass unchanged, so one setting serves a
    backbone whose last blocks are dense.

    Computed as a reshape and a mean where `k` divides the sides, else as
    two small matrix products; not as a pooling op: XLA's gradient of a
    wide-window average pool is slow on CPU (32 ms against 1.4 ms for a
    28x28x32 batch of 32 pooled to 2x2).

    Args:
        pool_size: int >= 1, the side of the pooled map.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: `(batch, H, W, C)` (pooled) or any other rank (unchanged).

    Example:

    >>> FeaturePooling(2)(np.zeros((4, 7, 7, 32), "float32")).shape
    TensorShape([4, 2, 2, 32])
    """

    def __init__(self, pool_size, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _check_positive_int(pool_size, "pool_size")
        self._rows = self._cols = None

    def _sides(self, input_shape):
        if len(input_shape) != 4:
            return None
        if None in tuple(input_shape[1:3]):
            raise ValueError(
                "FeaturePooling needs the feature map's height and width; got "
                f"input shape {tuple(input_shape)}.")
        return tuple(int(side) for side in input_shape[1:3])

    def _averaging_matrix(self, side):
        """(out, side) matrix whose row i averages input window i."""
        out = min(self.pool_size, side)
        matrix = np.zeros((out, side), "float32")
        for i in range(out):
            start, stop = (i * side) // out, -((-(i + 1) * side) // out)
            matrix[i, start:stop] = 1.0 / (stop - start)
        return matrix

    def build(self, input_shape):
        sides = self._sides(input_shape)
        if sides is not None:
            self._rows, self._cols = (self._averaging_matrix(s) for s in sides)
        self.built = True

    def call(self, inputs):
        if self._rows is None:
            return inputs
        (out_h, height), (out_w, width) = self._rows.shape, self._cols.shape
        if height % out_h == 0 and width % out_w == 0:  # Equal windows: cheaper.
            x = keras.ops.reshape(inputs, (-1, out_h, height // out_h, out_w,
                                           width // out_w, inputs.shape[-1]))
            return keras.ops.mean(x, axis=(2, 4))
        rows = keras.ops.cast(self._rows, inputs.dtype)
        cols = keras.ops.cast(self._cols, inputs.dtype)
        x = keras.ops.einsum("ih,bhwc->biwc", rows, inputs)
        return keras.ops.einsum("jw,biwc->bijc", cols, x)

    def compute_output_shape(self, input_shape):
        sides = self._sides(input_shape)
        if sides is None:
            return tuple(input_shape)
        return (input_shape[0],) + tuple(
            min(self.pool_size, side) for side in sides) + (input_shape[3],)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Bridge(keras.layers.Layer):
    """The bridge `b_i` of an AL block, mapping `s_i` into t-space.

    As in the original code: Flatten -> Dense(`hidden_multiplier * units`)
    -> Dense(`units`), both with the same bounded activation.  Two options
    make it light: `hidden_multiplier` below 5 narrows the hidden layer (0
    drops it: one Dense layer), and `pool_size=k` average-pools a feature
    map `(batch, H, W, C)` to `k x k` before flattening (`FeaturePooling`;
    `k=1` is global average pooling), so that the Dense layer sees
    `k * k * C` features instead of `H * W * C`.  Inputs of another rank
    are flattened unpooled.

    Args:
        units: int, width of `t_i`.
        hidden_multiplier: float >= 0, width of the hidden layer as a multiple
            of `units` (5 in the original code).
        pool_size: int >= 0, the side of the pooled map; 0 (default, as the
            original) flattens the whole map.
        sequence_pooling: None (default), or for a text block's masked
            sequence `(batch, T, d + 1)` (see `al_keras.MaskedSequence`)
            `"mean"` (the mean over the tokens) or `"last"` (the last
            token's features): `al_keras.SequencePooling`, before the
            Dense layers.
        activation: `"sigmoid"` (default), `"tanh"`, `"elu"` or `"relu"`.
        kernel_initializer: initializer of the kernels, default `"he_normal"`.
        kernel_regularizer: optional regularizer of the kernels.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: tensor `(batch, ...)`, the block's encoding `s_i`; it is
            flattened.

    Example:

    >>> b = Bridge(16)
    >>> b(np.zeros((4, 7, 7, 32), "float32")).shape
    TensorShape([4, 16])
    >>> light = Bridge(16, hidden_multiplier=1, pool_size=2)
    >>> light(np.zeros((4, 28, 28, 32), "float32")).shape   # Sees 2*2*32.
    TensorShape([4, 16])

    Reference:
        Kao & Chen, Associated Learning, Neural Computation 33(1), 2021.
    """

    def __init__(
        self,
        units,
        hidden_multiplier=5,
        activation="sigmoid",
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        pool_size=0,
        sequence_pooling=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _check_positive_int(units, "units")
        self.sequence_pooling = sequence_pooling
        self.sequence_pool = None
        if sequence_pooling is not None:
            from al_keras.core.sequence import SequencePooling

            self.sequence_pool = SequencePooling(
                sequence_pooling, dtype=self.dtype_policy, name="sequence_pool")
        if pool_size != 0:
            _check_positive_int(pool_size, "pool_size")
        self.pool_size = pool_size
        self.pool = (FeaturePooling(pool_size, dtype=self.dtype_policy,
                                    name="pool") if pool_size else None)
        if isinstance(hidden_multiplier, bool) or not (
            isinstance(hidden_multiplier, (int, float)) and hidden_multiplier >= 0
        ):
            raise ValueError(
                "`hidden_multiplier` must be a number >= 0, got "
                f"{hidden_multiplier!r}."
            )
        self.hidden_multiplier = hidden_multiplier
        self.activation = check_activation(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        dense_kwargs = dict(
            activation=activation,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
        )
        self.flatten = keras.layers.Flatten(dtype=self.dtype_policy)
        hidden_units = int(round(hidden_multiplier * units))
        self.hidden = (
            keras.layers.Dense(hidden_units, name="hidden", **dense_kwargs)
            if hidden_units > 0
            else None
        )
        self.output_dense = keras.layers.Dense(
            units, name="output_dense", **dense_kwargs
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if self.sequence_pool is not None:
            if len(input_shape) != 3:
                raise ValueError(
                    f"Bridge(sequence_pooling={self.sequence_pooling!r}) takes a "
                    "masked sequence (batch, T, features + 1); got input shape "
                    f"{input_shape}.")
            self.sequence_pool.build(input_shape)
            input_shape = self.sequence_pool.compute_output_shape(input_shape)
        if self.pool is not None:
            self.pool.build(input_shape)
            input_shape = self.pool.compute_output_shape(input_shape)
        flat_shape = self.flatten.compute_output_shape(input_shape)
        if flat_shape[-1] is None:
            raise ValueError(
                "Bridge needs a known feature size after flattening; got input "
                f"shape {tuple(input_shape)}."
            )
        if self.hidden is not None:
            self.hidden.build(flat_shape)
            flat_shape = self.hidden.compute_output_shape(flat_shape)
        self.output_dense.build(flat_shape)
        self.built = True

    def call(self, inputs):
        x = inputs if self.sequence_pool is None else self.sequence_pool(inputs)
        x = x if self.pool is None else self.pool(x)
        x = self.flatten(x)
        if self.hidden is not None:
            x = self.hidden(x)
        return self.output_dense(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            hidden_multiplier=self.hidden_multiplier,
            activation=self.activation,
            kernel_initializer=keras.initializers.serialize(
                self.kernel_initializer
            ),
            kernel_regularizer=keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            pool_size=self.pool_size,
            sequence_pooling=self.sequence_pooling,
        )
        return config
