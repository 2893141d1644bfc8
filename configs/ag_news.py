"""AG News: LSTM and Transformer, AL or BP (TFDS `ag_news_subset`).

    python train.py --config=configs/ag_news.py:model=lstm,method=al --workdir=/tmp/ag_news_lstm_al
    python train.py --config=configs/ag_news.py:model=lstm,method=bp --workdir=/tmp/ag_news_lstm_bp
    python train.py --config=configs/ag_news.py:model=transformer,method=al
    python train.py --config=configs/ag_news.py:model=lstm,smoke     # a seconds-long run

120,000 training and 7,600 test news items in 4 topics; the text is the
title and the description.

TFDS data (a connected machine, or `--config.data_dir`; offline: a one-line
how-to); 128 tokens, batch 128, 10 epochs; the ICLR 2022 model settings
(`config_lib.TEXT_MODELS`), embeddings trained from scratch: docs/text.md.

Expected: not measured here (this machine reaches no TFDS host).  The ICLR
2022 paper reports AL ahead of BP on this set, with pretrained embeddings.
"""

from al_keras.training import config_lib

MODELS = config_lib.TEXT_MODELS


def get_config(arg=None):
    return config_lib.text_config("ag_news", arg, models=MODELS,
                                  sequence_length=128, batch_size=128)
