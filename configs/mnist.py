"""MNIST with the original MLP and CNN, AL or BP (Kao & Chen's MNIST setup).

    python train.py --config=configs/mnist.py:model=mlp,method=al --workdir=/tmp/mnist_mlp_al
    python train.py --config=configs/mnist.py:model=cnn,method=bp --workdir=/tmp/mnist_cnn_bp

Needs TFDS' `mnist` prepared (a connected machine: `tfds build mnist`), or any
MNIST-format idx folder: `--config.data_dir=/path/to/idx`.  Original
settings: Adam 1e-4 (auto-encoders 2e-4), batch 32, 200 epochs, x0.1 at
40/60/80% and x0.5 at 90% of the steps, images scaled to [0, 1] and
mean-centred.  Expected accuracy and time: not measured here yet (no MNIST
can be had offline on the project's machines).
"""

from al_keras.training import config_lib

MODELS = {"mlp": {}, "cnn": {}}


def get_config(arg=None):
    return config_lib.paper_config("mnist", MODELS, arg)
