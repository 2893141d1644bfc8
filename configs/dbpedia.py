"""DBpedia ontology: LSTM and Transformer, AL or BP (TFDS `dbpedia`).

    python train.py --config=configs/dbpedia.py:model=lstm,method=al --workdir=/tmp/dbpedia_lstm_al
    python train.py --config=configs/dbpedia.py:model=lstm,method=bp --workdir=/tmp/dbpedia_lstm_bp
    python train.py --config=configs/dbpedia.py:model=transformer,method=al
    python train.py --config=configs/dbpedia.py:model=lstm,smoke     # a seconds-long run

560,000 training and 70,000 test Wikipedia abstracts in 14 classes; the
text is the title and the content.

TFDS data (a connected machine, or `--config.data_dir`; offline: a one-line
how-to); 128 tokens, batch 256, 10 epochs; the ICLR 2022 model settings
(`config_lib.TEXT_MODELS`), embeddings trained from scratch: docs/text.md.

Expected: not measured here (this machine reaches no TFDS host).  The ICLR
2022 paper reports AL ahead of BP on this set, with pretrained embeddings.
"""

from al_keras.training import config_lib

MODELS = config_lib.TEXT_MODELS


def get_config(arg=None):
    return config_lib.text_config("dbpedia", arg, models=MODELS,
                                  sequence_length=128, batch_size=256)
