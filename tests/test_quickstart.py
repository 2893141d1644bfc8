"""The main job, end to end but short."""

import json

import keras
import pytest

import al_keras
from al_keras.training import quickstart


@pytest.mark.slow
def test_quickstart_writes_models_exports_and_results(tmp_path):
    results = quickstart.run(str(tmp_path), epochs=2)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert set(saved) == {"al", "bp"}
    assert len(saved["al"]["exit_test_accuracy"]) == 2
    assert all(a > 0.8 for a in saved["al"]["exit_test_accuracy"]), saved["al"]  # 0.939, 0.936
    # Two epochs learn digits (measured: AL 0.936, BP 0.961); chance is 0.1.
    for method in ("al", "bp"):
        assert saved[method]["test_accuracy"] > 0.8, (method, saved[method])
        assert (tmp_path / f"{method}_saved_model" / "saved_model.pb").exists()
    reloaded = keras.models.load_model(tmp_path / "al.keras")
    assert isinstance(reloaded, al_keras.ALModel)
    assert int(reloaded.optimizer.iterations) == 2 * 45
    table = quickstart.format_table(results)
    assert table.count("\n") == 3 and "| al |" in table and "| bp |" in table


def test_quickstart_refuses_zero_epochs(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        quickstart.run(str(tmp_path), epochs=0)
