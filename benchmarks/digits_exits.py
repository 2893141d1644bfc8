"""Test accuracy of every exit, epoch by epoch: AL (sigmoid, tanh) vs BP.

    python benchmarks/digits_exits.py [--epochs=6] [--seeds=0,1,2] [--json=PATH]

The original MLP (`al_keras.models.get("mlp")`, 2 blocks of 1024, bridges
5n) on the embedded digits with Adam(1e-3), batch 32.  Prints, per variant
and seed, the test accuracy of exit 1 and exit 2 after each epoch, so that
how soon each exit learns can be read side by side with the BP twin.
"""

import json
import time

from absl import app
from absl import flags

_EPOCHS = flags.DEFINE_integer("epochs", 6, "Epochs per run.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_JSON = flags.DEFINE_string("json", None, "Write the results here.")

VARIANTS = {
    "al sigmoid (original)": dict(method="al"),
    "al tanh": dict(method="al", activation="tanh"),
    "bp twin": dict(method="bp"),
}


def main(argv):
    del argv
    import keras

    import al_keras

    (x, y), (x_test, y_test) = al_keras.data.load_digits()
    results = []
    for name, options in VARIANTS.items():
        for seed in map(int, _SEEDS.value):
            keras.utils.set_random_seed(seed)
            model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                        **options)
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          metrics=["accuracy"])
            exits = getattr(model, "num_blocks", 1)
            curve, seconds = [], 0.0
            for _ in range(_EPOCHS.value):
                start = time.perf_counter()
                model.fit(x, y, batch_size=32, epochs=1, verbose=0)
                seconds += time.perf_counter() - start
                kwargs = [{"exit": e} for e in range(1, exits + 1)] if exits > 1 else [{}]
                curve.append([
                    round(model.evaluate(x_test, y_test, verbose=0,
                                         return_dict=True, **kw)["accuracy"], 3)
                    for kw in kwargs
                ])
            results.append(dict(variant=name, seed=seed, curve=curve,
                                seconds_per_epoch=round(seconds / _EPOCHS.value, 2)))
            print(f"| {name} | {seed} | "
                  + " | ".join("/".join(f"{a:.2f}" for a in c) for c in curve)
                  + f" | {results[-1]['seconds_per_epoch']} |", flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
