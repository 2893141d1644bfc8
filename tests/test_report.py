"""python -m al_keras.training.report: one bad run directory never stops the report."""

import json
import os

import pytest

from al_keras.training import report, runs

RESULTS = {"method": "al", "dataset": "digits", "model": "mlp", "epochs": 2,
           "test_accuracy": 0.875, "train_seconds": 3.0, "examples_per_second": 100.0,
           "params": 1234}


def _run(folder, rows=2, results=RESULTS, **changes):
    os.makedirs(folder, exist_ok=True)
    for epoch in range(rows):
        runs.append_row(os.path.join(folder, "metrics.csv"), {
            "epoch": epoch, "accuracy": 0.5 + 0.1 * epoch, "val_accuracy": 0.4 + 0.1 * epoch,
            "assoc_loss_1": 1.0 / (epoch + 1), "val_exit_1_accuracy": 0.3})
    if results is not None:
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump({**results, **changes}, f)
    return str(folder)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _report(capsys, *args):
    try:
        status = report.main(list(args))
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def test_report_skips_each_unreadable_run_with_one_line_and_reports_the_rest(
        tmp_path, capsys):
    good, nan = _run(tmp_path / "good"), _run(tmp_path / "nan", test_accuracy=float("nan"))
    unfinished = _run(tmp_path / "unfinished", results=None)
    _write(f"{unfinished}/config.json", '{"method": "bp", "dataset": "digits", "model": "cnn"}')
    bad = {"missing": "no such directory.",
           "a_file": "not a directory (a train.py workdir is one).",
           "empty": "empty directory (not a train.py workdir).",
           "config_only": "no results.json and no epoch in metrics.csv",
           "truncated_json": "results.json is not valid JSON (Unterminated string",
           "list_json": "results.json holds a JSON list, not train.py's object",
           "no_keys": "results.json lacks dataset, model, epochs, test_accuracy",
           "nan_epochs": "results.json's epochs is nan; it must be an integer >= 0.",
           "bad_exits": "results.json has a malformed exit_test_accuracy",
           "truncated_csv": "metrics.csv line 3 is cut short (no 'val_accuracy' cell)",
           "text_cell": "metrics.csv line 2: accuracy='abc' is not a number."}
    _write(tmp_path / "a_file", "x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "config_only").mkdir()
    _write(tmp_path / "config_only/config.json", "{}")
    _write(_run(tmp_path / "truncated_json") + "/results.json", '{"method": "al", "data')
    _write(_run(tmp_path / "list_json") + "/results.json", "[1, 2]")
    _write(_run(tmp_path / "no_keys") + "/results.json", '{"method": "al"}')
    _run(tmp_path / "nan_epochs", epochs=float("nan"))
    _run(tmp_path / "bad_exits", exit_test_accuracy=["x"])
    csv = _run(tmp_path / "truncated_csv") + "/metrics.csv"
    _write(csv, open(csv).read()[:-12])
    csv = _run(tmp_path / "text_cell") + "/metrics.csv"
    _write(csv, open(csv).read().replace("0.5,", "abc,", 1))
    out = tmp_path / "report.png"
    status, table, err = _report(capsys, good, *[str(tmp_path / b) for b in bad], nan,
                                 unfinished, good, f"--output={out}")
    assert status == 0
    assert len(err) == len(bad) + 1  # One line each, and "given twice".
    for line, (name, why) in zip(err, bad.items()):
        assert line.startswith(f"report: skipped {tmp_path / name}: {why}"), line
    assert err[-1] == f"report: skipped {good}: given twice (read once)."
    rows = table.splitlines()
    assert len(rows) == 2 + 3 + 1 and rows[-1] == f"Curves: {out}"
    assert rows[2] == "| good | al | digits | mlp | 2 | 0.8750 | - | - | - | 1.5 | 100 | 1,234 |"
    assert "| nan | al | digits | mlp | 2 | nan |" in rows[3]
    assert rows[4] == ("| unfinished | bp | digits | cnn | 2 (unfinished) | unfinished | "
                       "- | - | - | - | - | - |")
    assert out.stat().st_size > 10_000


def test_report_fails_in_one_line_before_any_work_and_leaves_the_old_image(
        tmp_path, capsys):
    good = _run(tmp_path / "good")
    out = tmp_path / "report.png"
    out.write_bytes(b"old image")
    cases = {
        (): "report: name at least one run directory (a train.py workdir).",
        (good, f"--output={tmp_path}/nope/r.png"):
            f"report: --output={tmp_path}/nope/r.png: its folder {tmp_path}/nope does not "
            "exist; create it first.",
        (good, f"--output={tmp_path}"): f"report: --output={tmp_path} is a directory;",
        (good, "--output=r.txt"): "report: --output=r.txt: .txt is not an image format",
        (good, "--outptu=r.png"): "report: unrecognized arguments: --outptu=r.png.",
        (str(tmp_path / "missing"), f"--output={out}"):
            "report: none of the 1 run directories could be read",
    }
    for args, message in cases.items():
        status, table, err = _report(capsys, *args)
        assert status == (1 if "none of" in message else 2), args
        assert table == "" and err[-1].startswith(message), err
        assert len(err) == 1 + ("none of" in message)
    assert out.read_bytes() == b"old image"
    assert sorted(os.listdir(tmp_path)) == ["good", "report.png"]


def test_report_of_30_runs_some_sharing_a_folder_name(tmp_path, capsys):
    dirs = [_run(tmp_path / f"run_{i}", rows=1) for i in range(28)]
    dirs += [_run(tmp_path / "a" / "run_0", rows=1), _run(tmp_path / "b" / "run_0", rows=1)]
    assert runs.run_labels(dirs)[0] == f"{tmp_path.name}/run_0"
    assert runs.run_labels(dirs)[28:] == ["a/run_0", "b/run_0"]
    status, table, err = _report(capsys, *dirs, f"--output={tmp_path}/r.png")
    assert status == 0 and err == [] and len(table.splitlines()) == 2 + 30 + 1
    colors = runs.plot_curves(dirs, tmp_path / "r.png")
    assert len(colors) == len(set(colors.values())) == 30


def test_read_metrics_refuses_a_malformed_csv_in_one_line(tmp_path):
    run_dir = _run(tmp_path)
    path = tmp_path / "metrics.csv"
    text = path.read_text()
    path.write_text(text.replace("0.4", "nan"))  # NaN is a value (a diverged run's).
    assert str(runs.read_metrics(run_dir)[0]["val_accuracy"]) == "nan"
    for broken, message in [
            (text.replace("0.5,", "0.5,", 1)[:-5], r"metrics.csv line 3 is cut short"),
            (text + "2,1,2,3,4,5,6\n", r"metrics.csv line 4 has more cells than its header's 5"),
            (text.replace("\n0,", "\nzero,"), r"line 2: epoch='zero' is not an integer")]:
        path.write_text(broken)
        with pytest.raises(runs.RunError, match=message):
            runs.read_metrics(run_dir)


def test_plot_curves_writes_atomically_and_fails_leaving_nothing(tmp_path):
    run_dir = _run(tmp_path / "run")
    with pytest.raises(FileNotFoundError):
        runs.plot_curves([run_dir], tmp_path / "nope" / "r.png")
    (tmp_path / "r.png").write_bytes(b"old")
    with pytest.raises(ValueError):  # matplotlib's: no such format.
        runs.plot_curves([run_dir], tmp_path / "r.nosuchformat")
    assert sorted(os.listdir(tmp_path)) == ["r.png", "run"]
    runs.plot_curves([run_dir], tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000
    assert sorted(os.listdir(tmp_path)) == ["r.png", "run"]
