"""al_keras.training.runs: the workdir's CSV files and the report's curves."""

import os

from al_keras.training import runs


def _fake_run(folder, epochs=3, blocks=2):
    for epoch in range(epochs):
        row = {"epoch": epoch, "accuracy": 0.5 + 0.1 * epoch, "val_accuracy": 0.4 + 0.1 * epoch}
        for block in range(1, blocks + 1):
            row[f"assoc_loss_{block}"] = 1.0 / (epoch + block)
            row[f"ae_loss_{block}"] = 0.5 / (epoch + block)
            row[f"val_exit_{block}_accuracy"] = 0.3 + 0.1 * epoch
        runs.append_row(os.path.join(folder, "metrics.csv"), row)
    return str(folder)


def test_every_run_of_a_report_has_its_own_colour(tmp_path):
    run_dirs = []
    for i in range(12):  # More runs than matplotlib's default cycle of 10.
        (tmp_path / f"run_{i}").mkdir()
        run_dirs.append(_fake_run(tmp_path / f"run_{i}"))
    colors = runs.plot_curves(run_dirs, tmp_path / "report.png")
    assert list(colors) == [f"run_{i}" for i in range(12)]
    assert len(set(colors.values())) == 12
    assert (tmp_path / "report.png").stat().st_size > 20_000
    for count in (1, 10, 11, 20, 21, 40):
        assert len(set(runs.run_colors(count))) == count


def test_metrics_rows_round_trip(tmp_path):
    run_dir = _fake_run(tmp_path, epochs=2)
    rows = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[1]["ae_loss_2"] == 0.5 / 3
