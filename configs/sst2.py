"""SST-2: LSTM and Transformer, AL or BP (TFDS `glue/sst2`).

    python train.py --config=configs/sst2.py:model=lstm,method=al --workdir=/tmp/sst2_lstm_al
    python train.py --config=configs/sst2.py:model=lstm,method=bp --workdir=/tmp/sst2_lstm_bp
    python train.py --config=configs/sst2.py:model=transformer,method=al
    python train.py --config=configs/sst2.py:model=lstm,smoke     # a seconds-long run

67,349 training sentences, positive or negative; GLUE's test labels are
hidden, so the labelled 872-sentence validation split is the test set.

TFDS data (a connected machine, or `--config.data_dir`; offline: a one-line
how-to); 128 tokens, batch 128, 10 epochs; the ICLR 2022 model settings
(`config_lib.TEXT_MODELS`), embeddings trained from scratch: docs/text.md.

Expected: not measured here (this machine reaches no TFDS host).  The ICLR
2022 paper reports AL ahead of BP on this set, with pretrained embeddings.
"""

from al_keras.training import config_lib

MODELS = config_lib.TEXT_MODELS


def get_config(arg=None):
    return config_lib.text_config("sst2", arg, models=MODELS,
                                  sequence_length=128, batch_size=128)
