"""Compare training runs: a markdown table and one PNG of their curves.

    python -m al_keras.training.report RUN_DIR [RUN_DIR ...] [--output=report.png]

Each RUN_DIR is a `train.py` workdir (it has `results.json` and
`metrics.csv`).  Prints one table row per run (method, dataset, model,
epochs, test accuracy, exits, seconds per epoch, examples/s, params) and
writes the curves: test and training accuracy by epoch (every exit of AL
runs) and the local losses of each block.

One bad RUN_DIR does not stop the report:

* a run that cannot be read (no such directory, a file, an empty folder,
  one with no `results.json` and no finished epoch, a `results.json` or
  `metrics.csv` that is cut short or malformed) is skipped, with one line
  on stderr naming it and why (`report: skipped DIR: ...`);
* an unfinished run (`metrics.csv` with at least one epoch but no
  `results.json`: still training, or stopped) is drawn in the curves and
  has a row in the table marked "unfinished" (its epochs logged, the
  method, dataset and model of its `config.json`);
* a directory given twice is read once.

The command fails with one line on stderr and writes nothing when
`--output` cannot be written -- its folder missing, not a folder or
read-only, `--output` itself a folder, or an extension matplotlib does not
write -- checked before any run is read (exit status 2, as for no RUN_DIR
or an unknown flag), and when no run could be read (exit status 1).
The image is written atomically: a report that fails leaves the old one.
"""

import argparse
import os
import sys
import tempfile

from al_keras.training import runs as runs_lib

_USAGE = "python -m al_keras.training.report RUN_DIR [RUN_DIR ...] [--output=report.png]"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # One line, not argparse's usage and error.
        _fail(f"{message}. Usage: {_USAGE}")


def _fail(message, status=2):
    print(f"report: {message}", file=sys.stderr)
    raise SystemExit(status)


def check_output(path):
    """None if the image `path` can be written, else why not (one line)."""
    from matplotlib.backend_bases import FigureCanvasBase

    if not path:
        return "--output is empty; name the image to write, e.g. --output=report.png."
    if os.path.isdir(path):
        return (f"--output={path} is a directory; name the image file, e.g. "
                f"--output={os.path.join(path, 'report.png')}.")
    extension = os.path.splitext(path)[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if extension not in formats:
        return (f"--output={path}: " + (f".{extension} is not" if extension else "no extension;")
                + f" an image format matplotlib writes ({', '.join(sorted(formats))}).")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        return f"--output={path}: its folder {folder} does not exist; create it first."
    if not os.path.isdir(folder):
        return f"--output={path}: {folder} is not a folder."
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".report-check-"):
            pass
    except OSError as e:
        return f"--output={path}: cannot write in {folder} ({e.strerror or e})."
    return None


def main(argv=None):
    parser = _Parser(prog="python -m al_keras.training.report", allow_abbrev=False)
    parser.add_argument("run_dirs", nargs="*", metavar="RUN_DIR")
    parser.add_argument("--output", default="report.png", help="Where to write the curves.")
    args = parser.parse_args(argv)
    if not args.run_dirs:
        _fail(f"name at least one run directory (a train.py workdir). Usage: {_USAGE}")
    problem = check_output(args.output)
    if problem:
        _fail(problem)
    runs, seen = [], set()
    for run_dir in args.run_dirs:
        key = os.path.realpath(run_dir)
        if key in seen:
            print(f"report: skipped {run_dir}: given twice (read once).", file=sys.stderr)
            continue
        seen.add(key)
        try:
            runs.append(runs_lib.load_run(run_dir, unfinished=True))
        except runs_lib.RunError as e:
            print(f"report: skipped {e}", file=sys.stderr)
    if not runs:
        _fail(f"none of the {len(args.run_dirs)} run directories could be read "
              "(each one's reason above); nothing written.", status=1)
    print(runs_lib.markdown_table(runs))
    if not any(run["metrics"] for run in runs):
        print(f"report: no curves ({args.output} not written): no run has an epoch "
              "in its metrics.csv.", file=sys.stderr)
        return 0
    runs_lib.plot_curves(runs, args.output)
    print(f"Curves: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
