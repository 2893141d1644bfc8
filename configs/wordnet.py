"""WordNet noun supersenses (offline): LSTM and Transformer, AL or BP.

    python train.py --config=configs/wordnet.py:model=lstm,method=al
    python train.py --config=configs/wordnet.py:model=lstm,method=bp
    python train.py --config=configs/wordnet.py:model=transformer,method=al
    python train.py --config=configs/wordnet.py:model=transformer,method=bp
    python train.py --config=configs/wordnet.py:model=lstm,smoke     # seconds

Data: Debian's `wordnet-base` (`apt-get install wordnet-base`), read from
/usr/share/wordnet/data.noun (another folder: `--config.data_dir=DIR`).
Each of the 82,115 noun synsets is an example: its gloss (the synset's
words too with `--config.with_words=true`) labelled with its lexicographer
file, one of 26 noun supersenses; a fixed stratified 10% is the test set
(73,904 / 8,211).  The classes are unbalanced, so results.json has
macro-F1 beside accuracy.

Settings: the ICLR 2022 follow-up's models, narrowed to train 10 epochs on
a 2-core CPU in minutes: embedding 128 trained from scratch, bidirectional
LSTM of 128 a direction / Transformer of 4 heads with feed-forward 256,
2 sequence blocks after the embedding block, label width 128, tanh,
bridges of one Dense layer on the masked mean of s_i, cross-entropy h_1;
32 tokens (99% of the glosses fit in 37), vocabulary 30,000, batch 128,
Adam 1e-3, 10 epochs, seed 0.

Expected, seed 0, 10 epochs, 2-core CPU (docs/text.md: every exit, seconds),
measured 2026-12-02 with AL's He-normal label side (now the word
`original`, which trains as then):
  LSTM: AL 0.8282 (macro-F1 0.694), BP 0.8003 (0.653); ~104-135 s (AL), ~96-110 s
  (BP) an epoch. Transformer: AL 0.8026 (0.671), BP 0.8163 (0.682); ~41-55 s
  an epoch, with the ICLR code's separate embedding block
  (`--config.model_options.separate_embedding=true`); joined, 0.8167
  (0.699), its BP twin 0.8039 (0.675).
  The Transformer as configured now (joined, AL's tied label side,
  2026-12-04): AL 0.8106 (macro-F1 0.692; 0.8403 at epoch 2), BP 0.8196
  (0.680; 0.8341 at epoch 3).
"""

from al_keras.training import config_lib

MODELS = {
    "lstm": {"embedding_dim": 128, "lstm_units": 128, "label_units": 128},
    # The embedding is part of the first Transformer block (docs/text.md: its
    # own block's local loss cost AL 1.4 points); the ICLR code's separate
    # embedding block: --config.model_options.separate_embedding=true.
    "transformer": {"embedding_dim": 128, "num_heads": 4, "intermediate_dim": 256,
                    "label_units": 128, "separate_embedding": False},
}


def get_config(arg=None):
    return config_lib.text_config("wordnet", arg, models=MODELS, sequence_length=32,
                                  batch_size=128, epochs=10, lr=1e-3)
