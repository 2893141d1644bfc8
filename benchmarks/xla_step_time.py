"""Training step time with and without XLA, by dtype policy, AL and BP.

    python benchmarks/xla_step_time.py [--models=mlp,cnn] [--steps=20] \
        [--dtype_policies=float32,mixed_float16,mixed_bfloat16]

For each model of the Fashion-MNIST configs (28x28x1, 10 classes, batch
32, Adam), in one process: the AL model and its BP twin, built under each
Keras dtype policy (`float32`; mixed precision `mixed_float16`, with a loss
scale per optimizer, and `mixed_bfloat16`), each compiled with
`jit_compile=False` and `=True`, warmed up on 5 steps, then timed on one
batch (Keras' compiled train function on one batch held in memory, as
`step_timing.step_timer` times it for every benchmark; timing `fit` on
arrays here showed steps quantized
to multiples of ~64 ms).  Prints ms/step (median of 3 rounds of `--steps`),
the ratio plain/XLA, s per Fashion-MNIST epoch (1,875 steps) with XLA, and
the XLA step time relative to float32's.
"""

import statistics

from absl import app, flags

import step_timing

_MODELS = flags.DEFINE_list("models", ["mlp", "cnn"], "Zoo models to time.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per round.")
_POLICIES = flags.DEFINE_list(
    "dtype_policies", ["float32", "mixed_float16", "mixed_bfloat16"],
    "Keras dtype policies to time.")


def main(argv):
    del argv
    import keras
    import numpy as np

    import al_keras
    from al_keras.training import train_lib

    rng = np.random.default_rng(0)
    x = rng.random((32, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 32).astype("int32")
    print("| model | method | dtype policy | plain ms/step | XLA ms/step | "
          "plain/XLA | XLA s/epoch | XLA / float32 XLA |")
    print("|---|---|---|---|---|---|---|---|")
    for name in _MODELS.value:
        for method in ("al", "bp"):
            float32_xla = None
            for policy in _POLICIES.value:
                ms = {}
                for jit in (False, True):
                    with train_lib.dtype_policy(policy):
                        model = al_keras.models.get(
                            name, method=method, input_shape=(28, 28, 1),
                            num_classes=10)
                    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                                  metrics=["accuracy"], jit_compile=jit)
                    run = step_timing.step_timer(model, step_timing.one_batch(x, y))
                    run(5)  # Compiles; warms up.
                    ms[jit] = statistics.median(
                        run(_STEPS.value) for _ in range(3)) * 1000
                    keras.backend.clear_session()
                if policy == "float32":
                    float32_xla = ms[True]
                relative = (f"{ms[True] / float32_xla:.2f}" if float32_xla
                            else "-")
                print(f"| {name} | {method} | {policy} | {ms[False]:.1f} | "
                      f"{ms[True]:.1f} | {ms[False] / ms[True]:.2f} | "
                      f"{ms[True] * 1.875:.0f} | {relative} |", flush=True)


if __name__ == "__main__":
    app.run(main)
