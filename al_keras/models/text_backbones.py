"""The encoders of the text models: an embedding block, then sequence blocks.

As in the ICLR 2022 follow-up (Wu, Lin, Chen & Chen, *Associated Learning:
an Alternative to End-to-End Backpropagation that Works on CNN, RNN, and
Transformer*; code github Hibb-bb/AL): the embedding is a block of its own,
with its own bridge and local losses, followed by `num_layers` (2) AL
layers of bidirectional LSTMs or Transformer encoders.  Every encoder is a
`MaskedSequence`, so the padding mask travels with `s_i` (see
`al_keras.core.sequence`).  Inputs are token ids `(batch, sequence_length)`,
0 for padding (`keras.layers.TextVectorization`'s output).
"""

import keras

from al_keras.core.sequence import (
    MaskedSequence,
    TokenAndPositionEmbedding,
    TransformerEncoder,
)


def _sequence_length(input_shape, model):
    if len(input_shape) != 1 or not isinstance(input_shape[0], int) or input_shape[0] < 1:
        raise ValueError(
            f"The {model} model takes token ids (sequence_length,); got input shape "
            f"{tuple(input_shape)}. Give sequence_length=... (or input_shape=(T,)).")
    return input_shape[0]


def _check_vocabulary(vocab_size, model):
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(
            f"The {model} model needs vocab_size, the number of token ids (an int "
            f">= 2, e.g. TextVectorization.vocabulary_size()); got {vocab_size!r}.")


def _joined(encoders, separate_embedding):
    """`encoders`, or with the embedding joined to the first sequence block."""
    if separate_embedding or len(encoders) < 2:
        return encoders
    first = keras.Sequential(encoders[:2], name="f_1")
    return [first] + [_renamed(e, f"f_{i}") for i, e in enumerate(encoders[2:], start=2)]


def _renamed(layer, name):
    layer.name = name
    return layer


def lstm_encoders(input_shape, vocab_size=None, embedding_dim=300, lstm_units=256,
                  num_layers=2, dropout=0.0, separate_embedding=True,
                  kernel_regularizer=None):
    """Embedding block, then `num_layers` bidirectional-LSTM blocks.

    Each LSTM block is `Bidirectional(LSTM(lstm_units))` over the masked
    sequence: `2 * lstm_units` features per position (the ICLR 2022
    settings' hidden 512 is `lstm_units=256` per direction).  With
    `separate_embedding=False` the embedding is part of the first LSTM
    block (no local loss of its own): `num_layers` blocks.
    """
    _sequence_length(input_shape, "lstm")
    _check_vocabulary(vocab_size, "lstm")
    encoders = [MaskedSequence(keras.layers.Embedding(vocab_size, embedding_dim),
                               name="f_1")]
    for i in range(2, num_layers + 2):
        lstm = keras.layers.LSTM(lstm_units, return_sequences=True, dropout=dropout,
                                 kernel_regularizer=keras.regularizers.get(
                                     kernel_regularizer))
        encoders.append(MaskedSequence(keras.layers.Bidirectional(lstm), name=f"f_{i}"))
    return _joined(encoders, separate_embedding)


def transformer_encoders(input_shape, vocab_size=None, embedding_dim=300, num_heads=6,
                         intermediate_dim=512, num_layers=2, dropout=0.0,
                         separate_embedding=True, kernel_regularizer=None):
    """Token-and-position embedding block, then `num_layers` Transformer blocks.

    Each Transformer block is one `TransformerEncoder` (`num_heads` heads of
    `embedding_dim / num_heads`, feed-forward `intermediate_dim`).  With
    `separate_embedding=False` the embedding is part of the first
    Transformer block: `num_layers` blocks.
    """
    del kernel_regularizer  # The Transformer blocks take none (documented).
    length = _sequence_length(input_shape, "transformer")
    _check_vocabulary(vocab_size, "transformer")
    if embedding_dim % num_heads:
        raise ValueError(f"embedding_dim={embedding_dim} must divide by "
                         f"num_heads={num_heads}.")
    encoders = [MaskedSequence(TokenAndPositionEmbedding(vocab_size, length, embedding_dim),
                               name="f_1")]
    for i in range(2, num_layers + 2):
        encoders.append(MaskedSequence(
            TransformerEncoder(num_heads, intermediate_dim, dropout=dropout), name=f"f_{i}"))
    return _joined(encoders, separate_embedding)


# Defaults of the AL (and BP) options that differ for text models: the ICLR
# 2022 code's h_1 is trained with cross-entropy, its bridges are one Dense
# layer on the pooled sequence; the anchor settings use tanh.
TEXT_METHOD_DEFAULTS = {
    "activation": "tanh",
    "output_loss": "categorical_crossentropy",
    "bridge_multiplier": 0,
    "sequence_pooling": "mean",
}

# name -> (encoder function, its options and defaults, default label width).
TEXT_BACKBONES = {
    "lstm": (lstm_encoders, {"vocab_size": None, "embedding_dim": 300, "lstm_units": 256,
                             "num_layers": 2, "dropout": 0.0,
                             "separate_embedding": True}, 128),
    "transformer": (transformer_encoders, {"vocab_size": None, "embedding_dim": 300,
                                           "num_heads": 6, "intermediate_dim": 512,
                                           "num_layers": 2, "dropout": 0.0,
                                           "separate_embedding": True}, 128),
}
