"""IMDB reviews: LSTM and Transformer, AL or BP (TFDS `imdb_reviews`).

    python train.py --config=configs/imdb.py:model=lstm,method=al --workdir=/tmp/imdb_lstm_al
    python train.py --config=configs/imdb.py:model=lstm,method=bp --workdir=/tmp/imdb_lstm_bp
    python train.py --config=configs/imdb.py:model=transformer,method=al
    python train.py --config=configs/imdb.py:model=lstm,smoke     # a seconds-long run

25,000 training and 25,000 test movie reviews, positive or negative.

TFDS data (a connected machine, or `--config.data_dir`; offline: a one-line
how-to); 256 tokens, batch 128, 10 epochs; the ICLR 2022 model settings
(`config_lib.TEXT_MODELS`), embeddings trained from scratch: docs/text.md.

Expected: not measured here (this machine reaches no TFDS host).  The ICLR
2022 paper reports AL ahead of BP on this set, with pretrained embeddings.
"""

from al_keras.training import config_lib

MODELS = config_lib.TEXT_MODELS


def get_config(arg=None):
    return config_lib.text_config("imdb", arg, models=MODELS,
                                  sequence_length=256, batch_size=128)
