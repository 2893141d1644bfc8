"""CIFAR-100 with the paper's MLP, CNN, VGG and ResNet-20/32, AL or BP.

    python train.py --config=configs/cifar100.py:model=vgg,method=al --workdir=/tmp/c100_vgg_al
    python train.py --config=configs/cifar100.py:model=resnet20,method=bp --workdir=/tmp/c100_r20_bp
    python train.py --config=configs/cifar100.py:model=cnn,smoke --workdir=/tmp/c100_smoke

Needs TFDS' `cifar100` prepared (on a connected machine: `tfds build cifar100`).
Original settings: Adam 1e-4 (1e-3 for the ResNets, AL and BP alike, as the
original main.py does), auto-encoders x2, batch 32, 200 epochs, x0.1 at
40/60/80% and x0.5 at 90% of the steps; L2 1e-5 (VGG AL), 5e-4 (VGG BP),
1e-4 (ResNets); augmentation: pad to 40, random 32 crop, flip, brightness,
contrast, per-image standardization; MLP width 3,000.  Expected accuracy and
time: not measured here (no CIFAR can be had offline on the project's
machines; benchmarks/gpu_check.sh is the place for it).
"""

from al_keras.training import config_lib

MODELS = config_lib.CIFAR_MODELS


def get_config(arg=None):
    return config_lib.paper_config("cifar100", MODELS, arg, augment=True)
