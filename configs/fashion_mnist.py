"""Fashion-MNIST with the original MLP and CNN, AL or BP (their MNIST setup).

    python train.py --config=configs/fashion_mnist.py:model=mlp,method=al \
        --config.data_dir=/usr/share/datasets/fashion-mnist --workdir=/tmp/fashion_mnist_mlp_al
    python train.py --config=configs/fashion_mnist.py:model=cnn,method=bp \
        --config.data_dir=/usr/share/datasets/fashion-mnist --workdir=/tmp/fashion_mnist_cnn_bp

Offline: Debian's `dataset-fashion-mnist` package puts the idx files in
/usr/share/datasets/fashion-mnist; add
`--config.data_dir=/usr/share/datasets/fashion-mnist`.  Or TFDS'
`fashion_mnist` prepared on a connected machine (`tfds build fashion_mnist`).  Original
settings: Adam 1e-4 (auto-encoders 2e-4), batch 32, 200 epochs, x0.1 at
40/60/80% and x0.5 at 90% of the steps, images scaled to [0, 1] and
mean-centred.

Expected, seed 0, 10 epochs (`--config.epochs=10`), 2-core CPU (TF 2.21,
XLA), the reproduction table of docs/reproduction.md, measured with the
paper's label side (now the word `original`, e.g. `:model=cnn,original`,
which trains bit for bit as then):
  MLP, 60,000 images, lr 1e-3: AL 0.887 (exit 1 0.890), BP 0.890;
      ~210 s (AL) and ~140 s (BP) an epoch.
  MLP, original lr 1e-4: AL 0.872, BP 0.908 (AL underfits in 10 epochs).
  CNN, first 20,000 images (`--config.max_train_examples=20000`), lr 1e-3:
      AL 0.902, BP 0.900; ~240 s (AL) and ~90 s (BP) an epoch.
  CNN, 20,000 images, original lr 1e-4: AL 0.891, BP 0.888.
The original 200 epochs take about 200 times one epoch.  The default label
side (tanh, tied initialisation) learns from the first steps: light CNN,
2 epochs on 20,000 images, 0.747 against `original`'s 0.100
(docs/reproduction.md, "Learning from the first steps").
"""

from al_keras.training import config_lib

MODELS = {"mlp": {}, "cnn": {}}


def get_config(arg=None):
    return config_lib.paper_config("fashion_mnist", MODELS, arg)
