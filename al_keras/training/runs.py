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


class RunError(ValueError):
    """A workdir (or one of its files) that cannot be read; its message is
    one line naming the workdir and why."""


def read_metrics(run_dir):
    """The rows of `metrics.csv` as dicts of floats (epoch as int), with the
    `timings.csv` columns of the same epoch merged in; [] if none.

    Raises:
        RunError: a file that is not such a CSV (a non-numeric cell, a row
            cut short or too long, unreadable bytes).
    """
    run_dir = os.fspath(run_dir)
    timings = {row["epoch"]: row for row in _read_rows(run_dir, "timings.csv")}
    return [{**row, **timings.get(row["epoch"], {})}
            for row in _read_rows(run_dir, "metrics.csv")]


def _read_rows(run_dir, name):
    path = os.path.join(run_dir, name)
    if not os.path.exists(path):
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [(reader.line_num, row) for row in reader]
            fields = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RunError(f"{run_dir}: cannot read {name} "
                       f"({type(e).__name__}: {_first_line(e)})") from None
    if rows and "epoch" not in fields:
        raise RunError(f"{run_dir}: {name} has no epoch column (header {fields}).")
    parsed = []
    for line, row in rows:
        if None in row:
            raise RunError(f"{run_dir}: {name} line {line} has more cells than its "
                           f"header's {len(fields)}.")
        missing = [key for key, value in row.items() if value is None]
        if missing:
            raise RunError(f"{run_dir}: {name} line {line} is cut short (no "
                           f"{missing[0]!r} cell): the file is truncated.")
        values = {}
        for key, value in row.items():
            try:
                if key == "epoch":
                    values[key] = int(value)
                elif value != "":
                    values[key] = float(value)
            except ValueError:
                raise RunError(
                    f"{run_dir}: {name} line {line}: {key}={value!r} is not "
                    f"{'an integer' if key == 'epoch' else 'a number'}.") from None
        parsed.append(values)
    return parsed


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


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


def load_run(run_dir, unfinished=False):
    """{"dir", "name", "results", "metrics", "finished"} of one workdir.

    Args:
        run_dir: a `train.py` workdir.
        unfinished: also read a run without `results.json` whose
            `metrics.csv` has at least one epoch (a run still going, or
            stopped): its "results" are None, "finished" False, and "config"
            its `config.json` (or {}).

    Raises:
        RunError (a ValueError): one line naming `run_dir` and why it cannot
            be read: no such directory, not a directory, no `results.json`
            (saying whether the run is unfinished), a `results.json` that is
            not valid JSON, not an object, or lacks (or mistypes) a key the
            table needs, or a `metrics.csv` / `timings.csv` that `read_metrics`
            refuses.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.exists(run_dir):
        raise RunError(f"{run_dir}: no such directory.")
    if not os.path.isdir(run_dir):
        raise RunError(f"{run_dir}: not a directory (a train.py workdir is one).")
    path = os.path.join(run_dir, "results.json")
    metrics = read_metrics(run_dir)
    if not os.path.exists(path):
        if unfinished and metrics:
            return {"dir": run_dir, "name": os.path.basename(os.path.normpath(run_dir)),
                    "results": None, "metrics": metrics, "finished": False,
                    "config": _read_config(run_dir)}
        raise RunError(f"{run_dir}: {_why_no_results(run_dir, metrics)}")
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except json.JSONDecodeError as e:
        raise RunError(f"{run_dir}: results.json is not valid JSON ({e.msg}: line "
                       f"{e.lineno} column {e.colno}; cut short?).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{run_dir}: cannot read results.json ({type(e).__name__}: "
                       f"{_first_line(e)}).") from None
    if not isinstance(results, dict):
        raise RunError(f"{run_dir}: results.json holds a JSON {type(results).__name__}, "
                       "not train.py's object of results.")
    _check_results(run_dir, results)
    run = {"dir": run_dir, "name": f"{results['dataset']} {results['model']} "
                                   f"{results['method'].upper()}",
           "results": results, "metrics": metrics, "finished": True}
    try:  # The optional keys: what the table and the curves make of them.
        _table_row(run, "")
        if results.get("adaptive_exit") is not None:
            _tradeoff_points(results["adaptive_exit"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError,
            ZeroDivisionError) as e:
        raise RunError(f"{run_dir}: results.json has a malformed exit_test_accuracy, "
                       "test_macro_f1, exit_test_macro_f1 or adaptive_exit "
                       f"({type(e).__name__}: {_first_line(e)}).") from None
    return run


def _why_no_results(run_dir, metrics):
    if metrics:
        return (f"no results.json (an unfinished train.py run: {len(metrics)} "
                "epoch(s) in metrics.csv).")
    if os.path.exists(os.path.join(run_dir, "config.json")):
        return ("no results.json and no epoch in metrics.csv (a train.py run that "
                "stopped before its first epoch ended).")
    if not os.listdir(run_dir):
        return "empty directory (not a train.py workdir)."
    return "no results.json (not a finished train.py run)."


def _read_config(run_dir):
    """An unfinished run's `config.json` (for its method, dataset, model), or {}
    if it has none or one not readable (the table then says "?")."""
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


# What markdown_table needs of results.json: key -> (types, what it must be).
_NUMBER = (int, float)
_REQUIRED = {
    "method": ((str,), "a string"), "dataset": ((str,), "a string"),
    "model": ((str,), "a string"), "epochs": ((int,), "an integer >= 0"),
    "test_accuracy": (_NUMBER, "a number"), "train_seconds": (_NUMBER, "a number"),
    "examples_per_second": (_NUMBER + (type(None),), "a number or null"),
    "params": ((int,), "an integer >= 0"),
}


def _check_results(run_dir, results):
    missing = [key for key in _REQUIRED if key not in results]
    if missing:
        raise RunError(f"{run_dir}: results.json lacks {', '.join(missing)} (cut short, "
                       "or not written by train.py).")
    for key, (types, what) in _REQUIRED.items():
        value = results[key]
        if (isinstance(value, bool) or not isinstance(value, types)
                or (types == (int,) and value < 0)):
            raise RunError(f"{run_dir}: results.json's {key} is {value!r}; it must be "
                           f"{what}.")


def run_labels(run_dirs):
    """One label per run directory, as the table and the curves name them:
    its folder's name, or, where two runs share one, as many of the last
    folders of its path as tell them apart."""
    parts = [os.path.normpath(os.path.abspath(os.fspath(d))).split(os.sep)
             for d in run_dirs]
    labels = []
    for mine in parts:
        depth = 1
        while depth < len(mine) and any(
                other[-depth:] == mine[-depth:] for other in parts if other is not mine):
            depth += 1
        labels.append("/".join(mine[-depth:]) if depth > 1 else mine[-1])
    return labels


def markdown_table(runs):
    """A markdown table comparing `runs` (from `load_run`).

    An unfinished run (`load_run(..., unfinished=True)`) has a row saying
    so: its epochs logged, "unfinished" for its test accuracy, the method,
    dataset and model of its config.json, and "-" elsewhere.
    """
    lines = [
        "| run | method | dataset | model | epochs | test accuracy | exits | "
        "macro-F1 (exits) | adaptive exit: test accuracy, FLOPs saved | s/epoch | "
        "examples/s | params |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = run_labels([run["dir"] for run in runs])
    for run, label in zip(runs, labels):
        lines.append(_table_row(run, label))
    return "\n".join(lines)


def _table_row(run, label):
    label = label.replace("|", r"\|")
    r = run["results"]
    if r is None:  # Unfinished: what its config.json and metrics.csv say.
        config, rows = run.get("config") or {}, run["metrics"]
        seconds = [row["epoch_seconds"] for row in rows if "epoch_seconds" in row]
        per_epoch = f"{sum(seconds) / len(seconds):.1f}" if seconds else "-"
        method, dataset, model = (str(config.get(k, "?")).replace("|", r"\|")
                                  for k in ("method", "dataset", "model"))
        return (f"| {label} | {method} | {dataset} | {model} | {len(rows)} (unfinished) | "
                f"unfinished | - | - | - | {per_epoch} | - | - |")
    exits = ", ".join(f"{a:.4f}" for a in r.get("exit_test_accuracy") or []) or "-"
    f1 = "-" if r.get("test_macro_f1") is None else f"{r['test_macro_f1']:.4f}"
    if r.get("exit_test_macro_f1"):
        f1 += " (" + ", ".join(f"{a:.4f}" for a in r["exit_test_macro_f1"]) + ")"
    per_epoch = r["train_seconds"] / r["epochs"] if r["epochs"] else 0.0
    adaptive = (r.get("adaptive_exit") or {}).get("test")
    adaptive = (f"{adaptive['accuracy']:.4f}, {adaptive['flops_saved']:.1%}"
                if adaptive else "-")
    return (f"| {label} | {r['method']} | "
            f"{r['dataset']} | {r['model']} | {r['epochs']} | "
            f"{r['test_accuracy']:.4f} | {exits} | {f1} | {adaptive} | {per_epoch:.1f} | "
            f"{r['examples_per_second'] or 0:.0f} | {r['params']:,} |")


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

    `run_dirs` are workdirs (read with `load_run(d, unfinished=True)`: one
    that cannot be read raises its `RunError`) or runs `load_run` returned.
    Runs without a metrics row have no curves.  The image is written
    atomically (the old `path`, if any, stays until the new one is whole),
    in the format of `path`'s extension (PNG without one).

    A run has one colour in all panels (`run_colors`: no two runs share
    one), named once in the legend on the right; the line style tells the
    curve, as each panel's own legend says: test accuracy solid, training
    dotted, exits dashed; associated losses solid, auto-encoder losses
    dashed; a marker per block.

    Returns:
        `{run label: colour}` of the runs plotted (labels as `run_labels`).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    loaded = [run if isinstance(run, dict) else load_run(run, unfinished=True)
              for run in run_dirs]
    labels = run_labels([run["dir"] for run in loaded])
    runs = [(label, run["metrics"]) for label, run in zip(labels, loaded) if run["metrics"]]
    colors = dict(zip([label for label, _ in runs], run_colors(len(runs))))
    tradeoffs = {label: (run["results"] or {}).get("adaptive_exit")
                 for label, run in zip(labels, loaded)}
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
        # A run of one epoch is a point, which a line without a marker hides.
        point = {"marker": "o", "markersize": 5} if len(epochs) == 1 else {}
        acc_ax.plot(epochs, [r.get("val_accuracy") for r in rows], color=color, **point)
        acc_ax.plot(epochs, [r.get("accuracy") for r in rows], ls=":", color=color,
                    **(point and {"marker": "x", "markersize": 5}))
        exits = sorted(int(k.split("_")[2]) for k in keys
                       if k.startswith("val_exit_") and k.split("_")[2].isdigit())
        for block in exits[:-1]:  # the last exit is the full path
            acc_ax.plot(epochs, [r.get(f"val_exit_{block}_accuracy") for r in rows], ls="--",
                        alpha=0.6, color=color, marker=_block_marker(block), markersize=4)
        losses = sorted(k for k in keys if k.startswith(("assoc_loss_", "ae_loss_"))
                        and k.rsplit("_", 1)[1].isdigit())
        for key in losses or ["loss"]:
            block = int(key.rsplit("_", 1)[1]) if key != "loss" else None
            blocks.update([block] if block else [])
            loss_ax.plot(epochs, [r.get(key) for r in rows], color=color,
                         ls="--" if key.startswith("ae_") else "-",
                         marker=_block_marker(block) if block else point.get("marker"),
                         markersize=3)

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
    last = max((rows[-1]["epoch"] + 1 for _, rows in runs), default=1)
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if last <= 2:  # Epochs, not fractions of one, on a short run's axis.
            ax.set_xlim(0.5, last + 0.5)
            ax.set_xticks(range(1, last + 1))
    path = os.fspath(path)
    partial = f"{path}.partial-{os.getpid()}"
    try:
        fig.savefig(partial, dpi=100,
                    format=os.path.splitext(path)[1][1:].lower() or "png")
        replace_when_written(partial, path)
    finally:
        plt.close(fig)
        if os.path.exists(partial):
            os.remove(partial)
    return colors


def _tradeoff_points(t):
    """The adaptive exit's `(sweep, calibrated, fixed exits)` in FLOPs
    relative to the full path's: `[(flops, accuracy)]`, `(flops, accuracy)`,
    `[(flops, accuracy, exit)]`."""
    full = t["full_flops"]
    rows = sorted(t["table"], key=lambda row: row["flops"])
    return ([(row["flops"] / full, row["accuracy"]) for row in rows],
            (t["flops_per_example"] / full, t["accuracy"]),
            [(row["flops"] / full, row["accuracy"], int(row["exit"]))
             for row in t["fixed_exits"]])


def plot_tradeoffs(ax, tradeoffs, colors):
    """Validation accuracy against FLOPs per example (relative to the full
    path): the adaptive exit's threshold sweep as a line, its calibrated
    threshold as a star, and each fixed exit as a marker."""
    from matplotlib.lines import Line2D

    for label, t in tradeoffs.items():
        sweep, (flops, accuracy), fixed = _tradeoff_points(t)
        ax.plot([f for f, _ in sweep], [a for _, a in sweep], color=colors[label], lw=1.2)
        ax.plot(flops, accuracy, marker="*", markersize=13,
                color=colors[label], markeredgecolor="black", ls="")
        for flops, accuracy, exit in fixed:
            ax.plot(flops, accuracy, ls="", color=colors[label],
                    marker=_block_marker(exit), markersize=6, markerfacecolor="none")
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
