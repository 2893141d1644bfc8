"""Real data: the AL MLP and its BP twin learn scikit-learn's digits."""

import keras
import pytest

import al_keras


@pytest.mark.slow
@pytest.mark.parametrize("method", ["al", "bp"])
def test_mlp_reaches_95_percent_on_digits(method, digits):
    (x, y), (x_test, y_test) = digits  # fixed stratified split, seed 0
    keras.utils.set_random_seed(0)
    model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
                                method=method, hidden_units=256, label_units=128)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=15, verbose=0)
    logs = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert logs["accuracy"] >= 0.95
    if method == "al":
        # The shortcut exit of block 1 learns too.
        exit_1 = model.evaluate(x_test, y_test, exit=1, verbose=0, return_dict=True)
        assert exit_1["accuracy"] >= 0.9
