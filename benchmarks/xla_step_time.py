"""Training step time with and without XLA, AL and BP, side by side.

    python benchmarks/xla_step_time.py [--models=mlp,cnn] [--steps=80]

For each model of the Fashion-MNIST configs (28x28x1, 10 classes, batch
32, Adam), in one process: the AL model and its BP twin, each compiled with
`jit_compile=False` and `=True`, warmed up on 5 steps, then timed over one
epoch of `--steps` random batches.  Prints ms/step, s per Fashion-MNIST
epoch (1,875 steps) and the ratio plain/XLA.
"""

import time

from absl import app
from absl import flags

_MODELS = flags.DEFINE_list("models", ["mlp", "cnn"], "Zoo models to time.")
_STEPS = flags.DEFINE_integer("steps", 80, "Timed steps per run.")


def main(argv):
    del argv
    import keras
    import numpy as np

    import al_keras

    rng = np.random.default_rng(0)
    x = rng.random((32 * _STEPS.value, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 32 * _STEPS.value)
    print("| model | method | plain ms/step | XLA ms/step | plain/XLA | XLA s/epoch |")
    print("|---|---|---|---|---|---|")
    for name in _MODELS.value:
        for method in ("al", "bp"):
            ms = {}
            for jit in (False, True):
                model = al_keras.models.get(name, method=method, input_shape=(28, 28, 1),
                                            num_classes=10)
                model.compile(optimizer=keras.optimizers.Adam(1e-4), metrics=["accuracy"],
                              jit_compile=jit)
                model.fit(x[:32 * 5], y[:32 * 5], batch_size=32, epochs=1, verbose=0)
                start = time.perf_counter()
                model.fit(x, y, batch_size=32, epochs=1, verbose=0)
                ms[jit] = (time.perf_counter() - start) / _STEPS.value * 1000
            print(f"| {name} | {method} | {ms[False]:.1f} | {ms[True]:.1f} | "
                  f"{ms[False] / ms[True]:.2f} | {ms[True] * 1.875:.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
