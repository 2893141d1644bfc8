"""Test accuracy of every exit, epoch by epoch: AL variants vs the BP twin.

    python benchmarks/exit_curves.py [--epochs=6] [--seeds=0,1,2] [--json=PATH]
    python benchmarks/exit_curves.py --dataset=fashion_mnist \
        --data_dir=/usr/share/datasets/fashion-mnist --max_train_examples=12000 \
        --epochs=5 --seeds=0 --variants=al,al_ce,al_tanh,bp

The original MLP (`al_keras.models.get("mlp")`, 2 blocks of 1024, bridges
5n) with Adam at a constant `--lr` (1e-3), batch 32, XLA.  Prints, per
variant and seed, the test accuracy of every exit after each epoch (then
the mean seconds per epoch), so that how soon and how far each exit learns
can be read side by side with the BP twin.  Variants: `al` (the original:
sigmoid label side, MSE h_1), `al_tanh` (tanh label side), `al_ce`
(softmax h_1 trained by cross-entropy), `bp` (the BP twin).
"""

import json
import time

from absl import app, flags

_DATASET = flags.DEFINE_enum("dataset", "digits", ["digits", "mnist", "fashion_mnist"],
                             "Dataset (al_keras.data.datasets).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Its data_dir (idx folder).")
_MAX_TRAIN = flags.DEFINE_integer("max_train_examples", 0, "First N training examples (0: all).")
_EPOCHS = flags.DEFINE_integer("epochs", 6, "Epochs per run.")
_LR = flags.DEFINE_float("lr", 1e-3, "Adam's learning rate (constant).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_VARIANTS = flags.DEFINE_list("variants", ["al", "al_tanh", "bp"], "Variants to run.")
_JSON = flags.DEFINE_string("json", None, "Write the results here.")

VARIANTS = {
    "al": dict(method="al"),
    "al_tanh": dict(method="al", activation="tanh"),
    "al_ce": dict(method="al", output_loss="categorical_crossentropy"),
    "bp": dict(method="bp"),
}


def main(argv):
    del argv
    import keras

    import al_keras
    from al_keras.data import datasets
    from al_keras.training import train_lib

    unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
    if unknown:
        raise app.UsageError(f"Unknown variants {unknown}; known: {sorted(VARIANTS)}.")
    results = []
    for name in _VARIANTS.value:
        for seed in map(int, _SEEDS.value):
            data = datasets.load(
                _DATASET.value, batch_size=32, seed=seed, data_dir=_DATA_DIR.value or None,
                max_train_examples=_MAX_TRAIN.value)
            keras.utils.set_random_seed(seed)
            model = al_keras.models.get("mlp", input_shape=data.input_shape,
                                        num_classes=data.num_classes, **VARIANTS[name])
            model.compile(optimizer=keras.optimizers.Adam(_LR.value),
                          metrics=["accuracy"], jit_compile=True)
            curve, seconds = [], 0.0
            for _ in range(_EPOCHS.value):
                start = time.perf_counter()
                model.fit(data.train, epochs=1, verbose=0)
                seconds += time.perf_counter() - start
                if isinstance(model, al_keras.ALModel):
                    accuracies = train_lib.exit_accuracies(model, data.test)
                else:
                    accuracies = [model.evaluate(data.test, verbose=0,
                                                 return_dict=True)["accuracy"]]
                curve.append([round(a, 4) for a in accuracies])
            results.append(dict(variant=name, seed=seed, curve=curve,
                                seconds_per_epoch=round(seconds / _EPOCHS.value, 2)))
            print(f"| {name} | {seed} | "
                  + " | ".join("/".join(f"{a:.3f}" for a in c) for c in curve)
                  + f" | {results[-1]['seconds_per_epoch']} |", flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
