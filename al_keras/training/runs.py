"""`train.py` run directories: where they go, reading them, tables and curves.

A run directory (a workdir) holds `metrics.csv` (one row per epoch),
`timings.csv` (its `epoch_seconds`) and, once finished, `results.json`.
`python -m al_keras.training.report` is the command-line front of this
module.
"""

import csv
import json
import os

# Where train.py puts a run without --workdir.  Its name is no importable
# module: Python started in its parent must not find it as a namespace
# package (the old default, /tmp/al_keras, shadowed the package).
DEFAULT_WORKDIR_ROOT = "/tmp/al_keras_runs"


def default_workdir(config):
    """`DEFAULT_WORKDIR_ROOT/<dataset>_<model>_<method>[_<distribute>]`."""
    name = f"{config.dataset}_{config.model}_{config.method}"
    if config.distribute != "none":
        name += f"_{config.distribute}"
    return os.path.join(DEFAULT_WORKDIR_ROOT, name)


def read_metrics(run_dir):
    """The rows of `metrics.csv` as dicts of floats (epoch as int), with the
    `timings.csv` columns of the same epoch merged in; [] if none."""
    timings = {row["epoch"]: row for row in _read_rows(os.path.join(run_dir, "timings.csv"))}
    return [{**row, **timings.get(row["epoch"], {})}
            for row in _read_rows(os.path.join(run_dir, "metrics.csv"))]


def _read_rows(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    parsed = []
    for row in rows:
        values = {}
        for key, value in row.items():
            if key == "epoch":
                values[key] = int(value)
            elif value not in ("", None):
                values[key] = float(value)
        parsed.append(values)
    return parsed


def append_row(path, row):
    """Adds `row` (a dict with "epoch") to the CSV file `path`, rewriting it
    atomically: a run killed at any moment leaves the old file or the new."""
    rows = _read_raw(path) + [{k: repr(v) if isinstance(v, float) else str(v)
                               for k, v in row.items()}]
    fields = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
    _write_rows(path, fields, rows)


def truncate_metrics(run_dir, epochs):
    """Keeps only the rows of the first `epochs` epochs in `metrics.csv` and
    `timings.csv` (those of epochs whose checkpoint was not written)."""
    for name in ("metrics.csv", "timings.csv"):
        path = os.path.join(run_dir, name)
        if not os.path.exists(path):
            continue
        rows = _read_raw(path)
        kept = [row for row in rows if int(row["epoch"]) < epochs]
        if len(kept) != len(rows):
            with open(path, newline="") as f:
                fields = csv.DictReader(f).fieldnames
            _write_rows(path, fields, kept)


def _read_raw(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path, fields, rows):
    partial = path + ".partial"
    with open(partial, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
    replace_when_written(partial, path)


def replace_when_written(partial, path):
    """Moves the fully written file `partial` to `path`, atomically (a reader,
    or a process killed at any moment, sees the old file or the new) and
    durably (flushed to disk first)."""
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)


def load_run(run_dir):
    """{"dir", "name", "results", "metrics"} of one workdir."""
    path = os.path.join(run_dir, "results.json")
    if not os.path.exists(path):
        raise ValueError(f"{run_dir!r} has no results.json: not a finished train.py run.")
    with open(path) as f:
        results = json.load(f)
    name = f"{results['dataset']} {results['model']} {results['method'].upper()}"
    return {"dir": run_dir, "name": name, "results": results,
            "metrics": read_metrics(run_dir)}


def markdown_table(runs):
    """A markdown table comparing `runs` (from `load_run`)."""
    lines = [
        "| run | method | dataset | model | epochs | test accuracy | exits | "
        "s/epoch | examples/s | params |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        r = run["results"]
        exits = ", ".join(f"{a:.4f}" for a in r.get("exit_test_accuracy", [])) or "-"
        per_epoch = r["train_seconds"] / r["epochs"] if r["epochs"] else 0.0
        lines.append(
            f"| {os.path.basename(os.path.normpath(run['dir']))} | {r['method']} | "
            f"{r['dataset']} | {r['model']} | {r['epochs']} | "
            f"{r['test_accuracy']:.4f} | {exits} | {per_epoch:.1f} | "
            f"{r['examples_per_second'] or 0:.0f} | {r['params']:,} |"
        )
    return "\n".join(lines)


_EXIT_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")


def plot_curves(run_dirs, path):
    """Writes one PNG: accuracy by epoch and local losses, for every run."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run_dir in run_dirs:
        rows = read_metrics(run_dir)
        if not rows:
            continue
        label = os.path.basename(os.path.normpath(run_dir))
        epochs = [row["epoch"] + 1 for row in rows]
        keys = rows[-1].keys()
        line, = acc_ax.plot(epochs, [r.get("val_accuracy") for r in rows],
                            label=f"{label} test")
        acc_ax.plot(epochs, [r.get("accuracy") for r in rows], ls=":",
                    color=line.get_color(), label=f"{label} train")
        exits = sorted((k for k in keys if k.startswith("val_exit_")),
                       key=lambda k: int(k.split("_")[2]))
        for i, key in enumerate(exits[:-1]):  # the last exit is the full path
            acc_ax.plot(epochs, [r.get(key) for r in rows], ls="--", alpha=0.6,
                        color=line.get_color(), marker=_EXIT_MARKERS[i % len(_EXIT_MARKERS)],
                        markersize=4, label=f"{label} exit {key.split('_')[2]}")
        losses = sorted(k for k in keys if k.startswith(("assoc_loss_", "ae_loss_")))
        for key in losses or ["loss"]:
            loss_ax.plot(epochs, [r.get(key) for r in rows],
                         ls="--" if key.startswith("ae_") else "-",
                         label=f"{label} {key}")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Local losses (AL) / loss (BP)",
                yscale="log")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
