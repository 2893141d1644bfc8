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


def write_vocabulary(path, vectorizer):
    """Writes a TextVectorization's words from id 2 on, one a line, atomically."""
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.writelines(word + "\n" for word in vectorizer.get_vocabulary()[2:])
    replace_when_written(partial, path)


def read_vocabulary(path):
    """The words `write_vocabulary` wrote, or None if `path` does not exist."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


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
        "macro-F1 (exits) | adaptive exit: test accuracy, FLOPs saved | s/epoch | "
        "examples/s | params |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        r = run["results"]
        exits = ", ".join(f"{a:.4f}" for a in r.get("exit_test_accuracy", [])) or "-"
        f1 = "-" if r.get("test_macro_f1") is None else f"{r['test_macro_f1']:.4f}"
        if r.get("exit_test_macro_f1"):
            f1 += " (" + ", ".join(f"{a:.4f}" for a in r["exit_test_macro_f1"]) + ")"
        per_epoch = r["train_seconds"] / r["epochs"] if r["epochs"] else 0.0
        adaptive = (r.get("adaptive_exit") or {}).get("test")
        adaptive = (f"{adaptive['accuracy']:.4f}, {adaptive['flops_saved']:.1%}"
                    if adaptive else "-")
        lines.append(
            f"| {os.path.basename(os.path.normpath(run['dir']))} | {r['method']} | "
            f"{r['dataset']} | {r['model']} | {r['epochs']} | "
            f"{r['test_accuracy']:.4f} | {exits} | {f1} | {adaptive} | {per_epoch:.1f} | "
            f"{r['examples_per_second'] or 0:.0f} | {r['params']:,} |"
        )
    return "\n".join(lines)


_BLOCK_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")


def run_colors(count):
    """`count` distinct RGBA colours, one per run: matplotlib's tab10 up to 10
    runs, tab20 up to 20, evenly spaced along the turbo colour map beyond."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](i / (count - 1)) for i in range(count)]


def plot_curves(run_dirs, path):
    """Writes one PNG: accuracy by epoch and local losses, for every run,
    and accuracy against compute for the runs with a calibrated adaptive
    exit (`results.json`'s `adaptive_exit`).

    A run has one colour in all panels (`run_colors`: no two runs share
    one), named once in the legend on the right; the line style tells the
    curve, as each panel's own legend says: test accuracy solid, training
    dotted, exits dashed; associated losses solid, auto-encoder losses
    dashed; a marker per block.

    Returns:
        `{run label: colour}` of the runs plotted.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    runs = [(os.path.basename(os.path.normpath(d)), read_metrics(d)) for d in run_dirs]
    runs = [(label, rows) for label, rows in runs if rows]
    colors = dict(zip([label for label, _ in runs], run_colors(len(runs))))
    tradeoffs = {os.path.basename(os.path.normpath(d)): _adaptive_exit(d) for d in run_dirs}
    tradeoffs = {label: t for label, t in tradeoffs.items() if t and label in colors}
    fig, axes = plt.subplots(1, 3 if tradeoffs else 2, figsize=(19 if tradeoffs else 13, 4.8),
                             layout="constrained")
    acc_ax, loss_ax = axes[:2]
    if tradeoffs:
        plot_tradeoffs(axes[2], tradeoffs, colors)
    blocks = set()
    for label, rows in runs:
        color = colors[label]
        epochs = [row["epoch"] + 1 for row in rows]
        keys = rows[-1].keys()
        acc_ax.plot(epochs, [r.get("val_accuracy") for r in rows], color=color)
        acc_ax.plot(epochs, [r.get("accuracy") for r in rows], ls=":", color=color)
        exits = sorted(int(k.split("_")[2]) for k in keys if k.startswith("val_exit_"))
        for block in exits[:-1]:  # the last exit is the full path
            acc_ax.plot(epochs, [r.get(f"val_exit_{block}_accuracy") for r in rows], ls="--",
                        alpha=0.6, color=color, marker=_block_marker(block), markersize=4)
        losses = sorted(k for k in keys if k.startswith(("assoc_loss_", "ae_loss_")))
        for key in losses or ["loss"]:
            block = int(key.rsplit("_", 1)[1]) if key != "loss" else None
            blocks.update([block] if block else [])
            loss_ax.plot(epochs, [r.get(key) for r in rows], color=color,
                         ls="--" if key.startswith("ae_") else "-",
                         marker=_block_marker(block) if block else None, markersize=3)

    def styles(*entries):
        return [Line2D([], [], color="0.3", ls=ls, marker=marker, markersize=4, label=text)
                for ls, marker, text in entries]

    markers = [(None, _block_marker(b), f"block {b}") for b in sorted(blocks)]
    acc_ax.legend(handles=styles(("-", None, "test (full path)"), (":", None, "train"),
                                 ("--", None, "test, exit at a block")), fontsize=7)
    loss_ax.legend(handles=styles(("-", None, "associated (AL) / loss (BP)"),
                                  ("--", None, "auto-encoder"))
                   + [Line2D([], [], color="0.3", ls="", marker=m, label=t)
                      for _, m, t in markers], fontsize=7)
    fig.legend(handles=[Line2D([], [], color=c, lw=3, label=label) for label, c in colors.items()],
               loc="outside right upper", fontsize=8, title="runs",
               ncols=1 + len(colors) // 25)
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Local losses (AL) / loss (BP)",
                yscale="log")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return colors


def _adaptive_exit(run_dir):
    path = os.path.join(run_dir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get("adaptive_exit")


def plot_tradeoffs(ax, tradeoffs, colors):
    """Validation accuracy against FLOPs per example (relative to the full
    path): the adaptive exit's threshold sweep as a line, its calibrated
    threshold as a star, and each fixed exit as a marker."""
    from matplotlib.lines import Line2D

    for label, t in tradeoffs.items():
        full = t["full_flops"]
        rows = sorted(t["table"], key=lambda row: row["flops"])
        ax.plot([row["flops"] / full for row in rows], [row["accuracy"] for row in rows],
                color=colors[label], lw=1.2)
        ax.plot(t["flops_per_example"] / full, t["accuracy"], marker="*", markersize=13,
                color=colors[label], markeredgecolor="black", ls="")
        for row in t["fixed_exits"]:
            ax.plot(row["flops"] / full, row["accuracy"], ls="", color=colors[label],
                    marker=_block_marker(row["exit"]), markersize=6, markerfacecolor="none")
    ax.legend(handles=[
        Line2D([], [], color="0.3", label="adaptive exit, thresholds 0 to 1"),
        Line2D([], [], color="0.3", marker="*", ls="", markersize=11, label="calibrated"),
        Line2D([], [], color="0.3", marker="o", ls="", markerfacecolor="none",
               label="a fixed exit (marker: block)")], fontsize=7)
    ax.set(xlabel="FLOPs per example / full path's", ylabel="validation accuracy",
           title="Accuracy against compute")
    ax.grid(alpha=0.3)


def _block_marker(block):
    return _BLOCK_MARKERS[(block - 1) % len(_BLOCK_MARKERS)]
