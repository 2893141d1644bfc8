"""A 2-block model with fixed weights against losses and updates done by hand."""

import keras
import numpy as np

import al_keras

LR = 0.1


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def elu(z):
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


def _model_with_fixed_weights():
    model = al_keras.associate(
        [keras.layers.Dense(4, "elu"), keras.layers.Dense(3, "elu")],
        num_classes=3, label_units=[4, 2], bridge_multiplier=1,
        input_shape=(5,), activation="sigmoid",
    )
    rng = np.random.default_rng(42)
    for v in model.weights:
        v.assign(rng.normal(0.0, 0.7, v.shape).astype("float32"))
    return model


def _params(model):
    """Numpy (kernel, bias) of each part of each block."""
    out = []
    for block in model.blocks:
        def get(layer):
            return (layer.kernel.numpy(), layer.bias.numpy())
        out.append({
            "f": get(block.encoder),
            "g": get(block.label_encoder.dense),
            "b_hidden": get(block.bridge.hidden),
            "b_out": get(block.bridge.output_dense),
            "h": get(block.label_decoder.dense),
        })
    return out


def _by_hand(params, x, y):
    def dense(a, kb):
        return a @ kb[0] + kb[1]
    t_prev = np.eye(3)[y]
    s = x
    assoc, ae, cache = [], [], []
    for p in params:
        t = sigmoid(dense(t_prev, p["g"]))
        r = sigmoid(dense(t, p["h"]))
        ae.append(np.mean((r - t_prev) ** 2))
        s = elu(dense(s, p["f"]))
        pred = sigmoid(dense(sigmoid(dense(s, p["b_hidden"])), p["b_out"]))
        assoc.append(np.mean((pred - t) ** 2))
        cache.append(dict(t_prev=t_prev, t=t, r=r, pred=pred))
        t_prev = t
    out = pred
    for p in reversed(params):
        out = sigmoid(dense(out, p["h"]))
    probs = out / out.sum(-1, keepdims=True)
    return assoc, ae, probs, cache


def _data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(8, 5)).astype("float32"), rng.integers(0, 3, 8)


def test_evaluate_logs_the_hand_computed_losses():
    model = _model_with_fixed_weights()
    model.compile(optimizer=keras.optimizers.SGD(LR), metrics=["accuracy"])
    x, y = _data()
    assoc, ae, probs, _ = _by_hand(_params(model), x, y)
    logs = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    for i in range(2):
        np.testing.assert_allclose(logs[f"assoc_loss_{i + 1}"], assoc[i], rtol=1e-5)
        np.testing.assert_allclose(logs[f"ae_loss_{i + 1}"], ae[i], rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], sum(assoc) + sum(ae), rtol=1e-5)
    np.testing.assert_allclose(logs["accuracy"], np.mean(probs.argmax(-1) == y))
    np.testing.assert_allclose(model.predict(x, verbose=0), probs, atol=1e-6)


def test_one_sgd_step_logs_and_updates_as_by_hand():
    model = _model_with_fixed_weights()
    model.compile(optimizer=keras.optimizers.SGD(LR), metrics=["accuracy"])
    x, y = _data()
    params = _params(model)
    assoc, ae, probs, cache = _by_hand(params, x, y)
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    logs = {k: v[0] for k, v in history.history.items()}
    for i in range(2):
        np.testing.assert_allclose(logs[f"assoc_loss_{i + 1}"], assoc[i], rtol=1e-5)
        np.testing.assert_allclose(logs[f"ae_loss_{i + 1}"], ae[i], rtol=1e-5)
    # Training accuracy is measured on the inference path before the update.
    np.testing.assert_allclose(logs["accuracy"], np.mean(probs.argmax(-1) == y))

    # Bias gradients of the last dense layer of h_1 (auto-encoder, lr x 2)
    # and of b_1 (associated, lr x 1), by the chain rule.
    c = cache[0]
    grad_h = (2 * (c["r"] - c["t_prev"]) * c["r"] * (1 - c["r"])).sum(0) / c["r"].size
    grad_b = (2 * (c["pred"] - c["t"]) * c["pred"] * (1 - c["pred"])).sum(0) / c["pred"].size
    new = _params(model)
    np.testing.assert_allclose(new[0]["h"][1], params[0]["h"][1] - 2 * LR * grad_h,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new[0]["b_out"][1], params[0]["b_out"][1] - LR * grad_b,
                               rtol=1e-4, atol=1e-6)
