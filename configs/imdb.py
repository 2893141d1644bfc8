"""IMDB reviews: LSTM and Transformer, AL or BP (TFDS `imdb_reviews`).

    python train.py --config=configs/imdb.py:model=lstm,method=al --workdir=/tmp/imdb_lstm_al
    python train.py --config=configs/imdb.py:model=lstm,method=bp --workdir=/tmp/imdb_lstm_bp
    python train.py --config=configs/imdb.py:model=transformer,method=al
    python train.py --config=configs/imdb.py:model=lstm,smoke     # a seconds-long run

25,000 training and 25,000 test movie reviews, positive or negative.

Needs a connected machine (TFDS downloads and prepares it the first time)
or the prepared TFDS data in `--config.data_dir` / $TFDS_DATA_DIR; offline
it fails in seconds saying how to provide it (`tfds build ... --data_dir=DIR`
on a connected machine, then copy DIR).

Settings of the ICLR 2022 follow-up (Wu, Lin, Chen & Chen; their configs):
embedding 300, hidden 512 (a bidirectional LSTM of 256 a direction; the
Transformer's feed-forward), 6 heads, label width 128, 2 AL layers after the
embedding block, tanh, Adam 1e-3, vocabulary 30,000, 256 tokens, batch
128, 10 epochs.  Their embeddings were pretrained (GloVe / fastText),
which cannot be had offline: here they are trained from scratch.

Expected: not measured here (this machine reaches no TFDS host).  The ICLR
2022 paper reports AL ahead of BP on this set, with pretrained embeddings.
"""

from al_keras.training import config_lib

MODELS = config_lib.TEXT_MODELS


def get_config(arg=None):
    return config_lib.text_config("imdb", arg, models=MODELS,
                                  sequence_length=256, batch_size=128)
