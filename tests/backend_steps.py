"""Trains an AL model 20 steps on the Keras backend of this process, from
given initial weights on given batches, and saves the weights it ends with.

    KERAS_BACKEND=jax python tests/backend_steps.py MODEL IN.npz OUT.npz
    KERAS_BACKEND=jax python tests/backend_steps.py --load FILE.keras IN.npz OUT.npz

`IN.npz` holds `x`, `y` (the batches, in order) and, if present, `w0`, `w1`,
... the initial weights (`get_weights` order); without them the model's own
are saved to `OUT.npz` as they are before training.  After training, the
model is also saved as `OUT.keras`, and `OUT.npz` holds its predictions of
the first 16 examples (`probabilities`).  `--load` loads a `.keras` (of
either backend) and saves its predictions of the same examples.
tests/test_backends.py runs it on TensorFlow and on JAX.
"""

import sys

import numpy as np

LIGHT = dict(bridge_multiplier=1, bridge_pool_size=4, encoder_activation="elu")
MODELS = {  # name -> (models.get name, input shape, options): the configs'
    # models (configs/fashion_mnist.py, cifar10.py, wordnet.py), made smaller.
    "mlp": ("mlp", (28, 28, 1), dict(hidden_units=128, label_units=64,
                                     encoder_activation="elu")),
    "cnn_light": ("cnn", (28, 28, 1), dict(LIGHT, filters=(8, 8, 16, 16),
                                           label_units=64)),
    "resnet20_light": ("resnet20", (32, 32, 3), dict(LIGHT, label_units=64,
                                                     kernel_regularizer=1e-4)),
    "transformer": ("transformer", (16,), dict(
        vocab_size=50, num_layers=2, embedding_dim=16, num_heads=2,
        intermediate_dim=32, label_units=16, bridge_multiplier=0,
        output_loss="categorical_crossentropy", sequence_pooling="mean",
        separate_embedding=False, dropout=0.0)),
}


def build(name):
    import al_keras

    kind, shape, options = MODELS[name]
    return al_keras.models.get(kind, input_shape=shape, num_classes=10, **options)


def load(path, source, target):
    import keras

    import al_keras  # noqa: F401  (registers the classes)

    model = keras.saving.load_model(path, safe_mode=True)
    x = np.load(source)["x"][:16]
    np.savez(target, probabilities=np.asarray(model.predict(x, verbose=0)))


def main(name, source, target):
    import keras

    keras.utils.set_random_seed(0)
    data = np.load(source)
    model = build(name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    initial = [data[f"w{i}"] for i in range(len(model.get_weights()))
               if f"w{i}" in data]
    if not initial:
        np.savez(target, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
        return
    model.set_weights(initial)
    model.fit(data["x"], data["y"], batch_size=16, epochs=1, shuffle=False, verbose=0)
    out = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    out["probabilities"] = np.asarray(model.predict(data["x"][:16], verbose=0))
    np.savez(target, **out)
    model.save(target[:-len(".npz")] + ".keras")


if __name__ == "__main__":
    if sys.argv[1] == "--load":
        load(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
