"""Fashion-MNIST with the original MLP and CNN, AL or BP (their MNIST setup).

    python train.py --config=configs/fashion_mnist.py:model=mlp,method=al --workdir=/tmp/fashion_mnist_mlp_al
    python train.py --config=configs/fashion_mnist.py:model=cnn,method=bp --workdir=/tmp/fashion_mnist_cnn_bp

Offline: Debian's `dataset-fashion-mnist` package puts the idx files in
/usr/share/datasets/fashion-mnist; add
`--config.data_dir=/usr/share/datasets/fashion-mnist`.  Or TFDS'
`fashion_mnist` prepared on a connected machine (`tfds build fashion_mnist`).  Original
settings: Adam 1e-4 (auto-encoders 2e-4), batch 32, 200 epochs, x0.1 at
40/60/80% and x0.5 at 90% of the steps, images scaled to [0, 1] and
mean-centred.  Expected accuracy and time: see the README's reproduction
table (measured here with fewer epochs).
"""

from al_keras import config_lib

MODELS = {"mlp": {}, "cnn": {}}


def get_config(arg=None):
    return config_lib.paper_config("fashion_mnist", MODELS, arg)
