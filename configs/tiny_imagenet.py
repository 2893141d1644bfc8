"""Tiny-ImageNet-200 with the paper's MLP and CNN, AL or BP.

    python train.py --config=configs/tiny_imagenet.py:model=cnn,method=al \
        --config.data_dir=/path/with/tiny-imagenet-200.zip --workdir=/tmp/tin_cnn_al

Needs the official `tiny-imagenet-200.zip` in `config.data_dir` (it is
prepared into TFDS once).  Original settings: Adam 1e-4, auto-encoders x2,
batch 100, 200 epochs, x0.1 at 40/60/80% and x0.5 at 90% of the steps;
augmentation: pad to 70, random 64 crop, flip, colour jitter, per-image
standardization.  Expected accuracy and time: not measured here (the data
cannot be had offline on the project's machines).
"""

from al_keras.training import config_lib

MODELS = {"mlp": {}, "cnn": {}}


def get_config(arg=None):
    return config_lib.paper_config("tiny_imagenet", MODELS, arg, batch_size=100,
                                   augment=True)
