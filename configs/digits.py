"""The embedded default: scikit-learn's 8x8 digits, offline, in seconds.

    python train.py                      # AL MLP, workdir printed at start
    python train.py --config=configs/digits.py:method=bp --workdir=/tmp/digits_bp
    python train.py --config=configs/digits.py:model=cnn
    python train.py --config=configs/digits.py:original   # AL with the paper's settings

Expected (2-core CPU, TF 2.21, 2026-12-04): AL MLP test accuracy 0.983
(exits 0.975 / 0.983) after 8 s of training, 0.911 after the first epoch
(`--config.epochs=1`); with `:original` (sigmoid, He-normal) 0.969, and
0.10 after the first epoch; BP twin ~0.97.  A smaller MLP than the paper's
(256 hidden, label width 128) and Adam at 1e-3, constant: 1,438 training
examples are 45 steps an epoch.
"""

from al_keras.training import config_lib


def get_config(arg=None):
    args = config_lib.parse_arg(arg, model="mlp", method="al", original=False, smoke=False)
    options = {"mlp": {"hidden_units": 256, "label_units": 128},
               "cnn": {"filters": (16, 16, 32, 32), "label_units": 64}}
    if args.model not in options:
        raise ValueError(f"configs/digits.py has models {sorted(options)}, got {args.model!r}.")
    config = config_lib.base_config(
        "digits", args.model, args.method, epochs=15, batch_size=32, lr=1e-3,
        model_options={**options[args.model], **config_lib.original_options(args)})
    config.lr_schedule = "constant"
    return config_lib.smoke(config) if args.smoke else config
