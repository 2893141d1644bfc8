"""Sequence layers: token ids in, masked sequences between blocks.

A text model's blocks hand each other a *masked sequence*: a float tensor
`(batch, T, features + 1)` whose last channel is the padding mask (1.0 for
a token, 0.0 for padding) and whose features are zero at padded positions.
The mask so travels with `s_i` wherever `s_i` goes -- through the
stop-gradients of the local losses, between the devices of `BlockParallel`,
through the object store between `RayPipeline` stages, into every exit --
with nothing else to carry.  Inside a block, Keras' own masking applies:

* `MaskedSequence(layer)` wraps any Keras layer as a sequence block's
  encoder.  Given token ids `(batch, T)` (the first block: id 0 is padding)
  it calls `layer(ids)`; given a masked sequence it calls
  `layer(features, mask=mask)` (e.g. `keras.layers.Bidirectional(LSTM(...,
  return_sequences=True))`); it zeroes the padded outputs and appends the mask.
* `TokenAndPositionEmbedding` (token plus learned position embeddings) and
  `TransformerEncoder` (self-attention over the non-padded positions,
  feed-forward, layer norms) are the Transformer's layers.
* `SequencePooling` pools a masked sequence over its tokens (masked mean, or
  the last token's features) for the bridges and the BP twin's head.

`check_preprocessor` readies a model's `preprocessor` (a `TextVectorization`
with its vocabulary in its config).

Padding positions never change an output: attention ignores padded keys,
LSTMs skip padded steps, pooling reads tokens only.  Token ids are
post-padded (as `keras.layers.TextVectorization` writes them).
"""

import inspect

import keras

from al_keras.core.layers import _PACKAGE, _check_positive_int

POOLINGS = ("mean", "last")


def split_mask(inputs):
    """`(features, mask)` of a masked sequence; the mask as booleans."""
    return inputs[..., :-1], inputs[..., -1] > 0.5


def _accepts(layer, argument):
    try:
        return argument in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedSequence(keras.layers.Layer):
    """A sequence block's encoder: any Keras layer, with the padding mask carried.

    Input: token ids `(batch, T)` (id 0 is padding), or a masked sequence
    `(batch, T, d + 1)` from the block before (its last channel the mask).
    Output: the masked sequence `(batch, T, d' + 1)` of `layer`'s outputs,
    zero at padded positions, the mask appended.  `layer` gets Keras' mask
    (`mask=`, booleans `(batch, T)`) when its `call` takes one.

    Args:
        layer: a Keras layer mapping ids `(batch, T)` (first block) or
            features `(batch, T, d)` to `(batch, T, d')`, e.g.
            `keras.layers.Embedding(vocab_size, 300)`,
            `keras.layers.Bidirectional(keras.layers.LSTM(256,
            return_sequences=True))` or `al_keras.TransformerEncoder(6, 512)`.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: token ids or a masked sequence.
        training: bool, passed to `layer` if it takes it.

    Example:

    >>> block = MaskedSequence(keras.layers.Embedding(100, 8))
    >>> block(np.array([[5, 7, 0, 0]])).shape        # 8 features + the mask
    TensorShape([1, 4, 9])
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"MaskedSequence wraps a Keras layer, got {type(layer).__name__}.")
        self.layer = layer
        self._takes_mask = _accepts(layer, "mask")
        self._takes_training = _accepts(layer, "training")

    @staticmethod
    def _takes_ids(shape):
        if len(shape) == 2:
            return True
        if len(shape) == 3:
            return False
        raise ValueError(
            "MaskedSequence takes token ids (batch, T) or a masked sequence "
            f"(batch, T, features + 1); got shape {tuple(shape)}.")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        inner = input_shape if self._takes_ids(input_shape) else (
            input_shape[:-1] + (input_shape[-1] - 1,))
        if not self.layer.built:
            self.layer.build(inner)
        self.built = True

    def call(self, inputs, training=None):
        kwargs = {"training": training} if self._takes_training else {}
        if self._takes_ids(inputs.shape):
            ids = keras.ops.cast(inputs, "int32")
            mask = keras.ops.not_equal(ids, 0)
            outputs = self.layer(ids, **kwargs)
        else:
            features, mask = split_mask(inputs)
            if self._takes_mask:
                kwargs["mask"] = mask
            outputs = self.layer(features, **kwargs)
        weights = keras.ops.cast(mask, outputs.dtype)[..., None]
        return keras.ops.concatenate([outputs * weights, weights], axis=-1)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self._takes_ids(input_shape):
            inner = self.layer.compute_output_spec(
                keras.KerasTensor(input_shape, dtype="int32")).shape
        else:
            inner = self.layer.compute_output_spec(keras.KerasTensor(
                input_shape[:-1] + (input_shape[-1] - 1,),
                dtype=self.compute_dtype)).shape
        return tuple(inner[:-1]) + (inner[-1] + 1,)

    def get_config(self):
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.layer))
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SequencePooling(keras.layers.Layer):
    """Pools a masked sequence over its tokens: `(batch, T, d + 1)` to `(batch, d)`.

    `"mean"`: the mean of the features over the non-padded positions (zeros
    for a sequence of padding only).  `"last"`: the features of the last
    non-padded position (ids are post-padded); for a bidirectional LSTM
    that is the forward direction's final state and the backward
    direction's state after one token, as the ICLR 2022 code reads it.

    Args:
        mode: `"mean"` (default) or `"last"`.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: a masked sequence (see `MaskedSequence`).

    Example:

    >>> seq = np.array([[[2., 1.], [4., 1.], [9., 0.]]], "float32")
    >>> SequencePooling("mean")(seq).numpy()     # (2 + 4) / 2; 9 is padding
    array([[3.]], dtype=float32)
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLINGS:
            raise ValueError(f"Unknown sequence pooling {mode!r}; expected one of "
                             f"{POOLINGS}.")
        self.mode = mode

    def call(self, inputs):
        features, mask = split_mask(inputs)
        weights = keras.ops.cast(mask, features.dtype)
        counts = keras.ops.sum(weights, axis=1)
        if self.mode == "mean":
            total = keras.ops.sum(features * weights[..., None], axis=1)
            return total / keras.ops.maximum(counts, 1.0)[:, None]
        last = keras.ops.maximum(keras.ops.cast(counts, "int32") - 1, 0)
        return keras.ops.take_along_axis(
            features, last[:, None, None], axis=1)[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] - 1)

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token embeddings plus learned position embeddings.

    Args:
        vocabulary_size: int, ids are in `[0, vocabulary_size)` (0: padding).
        sequence_length: int, the longest sequence (positions learned).
        embedding_dim: int, the width of both embeddings.
        embeddings_initializer: of both tables, default `"uniform"`
            (Keras' `Embedding`'s).
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: int ids `(batch, T)`, `T <= sequence_length`.

    Example:

    >>> TokenAndPositionEmbedding(100, 16, 8)(np.array([[3, 4, 0]])).shape
    TensorShape([1, 3, 8])
    """

    def __init__(self, vocabulary_size, sequence_length, embedding_dim,
                 embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = _check_positive_int(vocabulary_size, "vocabulary_size")
        self.sequence_length = _check_positive_int(sequence_length, "sequence_length")
        self.embedding_dim = _check_positive_int(embedding_dim, "embedding_dim")
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim,
            embeddings_initializer=self.embeddings_initializer,
            dtype=self.dtype_policy, name="token_embedding")
        self.position_embedding = keras.layers.Embedding(
            sequence_length, embedding_dim,
            embeddings_initializer=self.embeddings_initializer,
            dtype=self.dtype_policy, name="position_embedding")

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.position_embedding.build((None,))
        self.built = True

    def call(self, inputs):
        length = keras.ops.shape(inputs)[1]
        positions = self.position_embedding(keras.ops.arange(length))
        return self.token_embedding(inputs) + positions[None]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            embedding_dim=self.embedding_dim,
            embeddings_initializer=keras.initializers.serialize(
                self.embeddings_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TransformerEncoder(keras.layers.Layer):
    """A Transformer encoder layer with a padding mask (Vaswani et al., 2017).

    `x + MultiHeadAttention(x, x)`, layer norm, `x + FeedForward(x)`, layer
    norm (post-norm, as PyTorch's default `TransformerEncoderLayer` that the
    ICLR 2022 code uses); padded positions are never attended to.

    Args:
        num_heads: int, attention heads; the input width must divide by it.
        intermediate_dim: int, width of the feed-forward layer.
        dropout: float in [0, 1), after attention and feed-forward.
        activation: of the feed-forward layer, default `"relu"`.
        layer_norm_epsilon: float, default 1e-5.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: `(batch, T, d)`.
        mask: optional booleans `(batch, T)`, False at padding.
        training: bool, for dropout.

    Example:

    >>> TransformerEncoder(2, 32)(np.zeros((1, 5, 16), "float32")).shape
    TensorShape([1, 5, 16])

    Reference:
        Vaswani et al., Attention Is All You Need, NeurIPS 2017.
    """

    def __init__(self, num_heads, intermediate_dim, dropout=0.0, activation="relu",
                 layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = _check_positive_int(num_heads, "num_heads")
        self.intermediate_dim = _check_positive_int(intermediate_dim, "intermediate_dim")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
        self.dropout = float(dropout)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.supports_masking = True

    def build(self, input_shape):
        width = int(input_shape[-1])
        if width % self.num_heads:
            raise ValueError(f"TransformerEncoder: the input width {width} does not "
                             f"divide by num_heads={self.num_heads}.")
        common = dict(dtype=self.dtype_policy)
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, width // self.num_heads, dropout=self.dropout,
            name="attention", **common)
        self.attention.build(input_shape, input_shape)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm", **common)
        self.attention_norm.build(input_shape)
        self.intermediate = keras.layers.Dense(
            self.intermediate_dim, activation=self.activation, name="intermediate",
            **common)
        self.intermediate.build(input_shape)
        self.feed_forward_output = keras.layers.Dense(
            width, name="feed_forward_output", **common)
        self.feed_forward_output.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        self.feed_forward_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="feed_forward_norm", **common)
        self.feed_forward_norm.build(input_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, **common)
        self.built = True

    def call(self, inputs, mask=None, training=None):
        attention_mask = None if mask is None else keras.ops.logical_and(
            mask[:, None, :], keras.ops.ones_like(mask, "bool")[:, :, None])
        attended = self.attention(inputs, inputs, attention_mask=attention_mask,
                                  training=training)
        x = self.attention_norm(
            inputs + self.dropout_layer(attended, training=training))
        fed = self.feed_forward_output(self.intermediate(x))
        return self.feed_forward_norm(x + self.dropout_layer(fed, training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, intermediate_dim=self.intermediate_dim,
                      dropout=self.dropout, activation=self.activation,
                      layer_norm_epsilon=self.layer_norm_epsilon)
        return config


def vocabulary_size(encoder):
    """The number of token ids `encoder` embeds (None if it embeds none).

    Looks through `MaskedSequence` and `keras.Sequential` wrappers for the
    first `Embedding` or `TokenAndPositionEmbedding`.
    """
    layer = encoder
    while True:
        if isinstance(layer, TokenAndPositionEmbedding):
            return layer.vocabulary_size
        if isinstance(layer, keras.layers.Embedding):
            return int(layer.input_dim)
        if isinstance(layer, MaskedSequence):
            layer = layer.layer
        elif isinstance(layer, keras.Sequential) and layer.layers:
            layer = layer.layers[0]
        else:
            return None


def carries_mask(encoder):
    """Whether `encoder` hands on a masked sequence: a `MaskedSequence`, or a
    `keras.Sequential` whose last layer is one."""
    if isinstance(encoder, keras.Sequential) and encoder.layers:
        return carries_mask(encoder.layers[-1])
    return isinstance(encoder, MaskedSequence)


def check_preprocessor(preprocessor):
    """The `preprocessor` argument of `ALModel` / `BPModel`, checked.

    An adapted `TextVectorization` is remade with its vocabulary as a list,
    so that its config (which the model's config carries) holds it.
    """
    if isinstance(preprocessor, dict):
        preprocessor = keras.saving.deserialize_keras_object(preprocessor)
    if preprocessor is not None and not isinstance(preprocessor, keras.layers.Layer):
        raise TypeError("`preprocessor` must be a Keras layer (e.g. an adapted "
                        f"TextVectorization), got {type(preprocessor).__name__}.")
    if isinstance(preprocessor, keras.layers.TextVectorization):
        config = preprocessor.get_config()
        if config.get("vocabulary") is None:
            vocabulary = preprocessor.get_vocabulary()
            if len(vocabulary) <= 2:
                raise ValueError("The TextVectorization preprocessor has no vocabulary: "
                                 "adapt it (or give it vocabulary=...) first.")
            config.update(vocabulary=vocabulary[2:], has_input_vocabulary=True)
            config.pop("idf_weights", None)
            preprocessor = keras.layers.TextVectorization.from_config(config)
        if not preprocessor.built:  # (Export tracks built layers only.)
            preprocessor.build((None,))
    return preprocessor
