"""Compare training runs: a markdown table and one PNG of their curves.

    python -m al_keras.training.report RUN_DIR [RUN_DIR ...] [--output=report.png]

Each RUN_DIR is a `train.py` workdir (it has `results.json` and
`metrics.csv`).  Prints one table row per run (method, dataset, model,
epochs, test accuracy, exits, seconds per epoch, examples/s, params) and
writes the curves: test and training accuracy by epoch (every exit of AL
runs) and the local losses of each block.
"""

from absl import app, flags

from al_keras.training import runs as runs_lib

_OUTPUT = flags.DEFINE_string("output", "report.png", "Where to write the curves.")


def main(argv):
    run_dirs = argv[1:]
    if not run_dirs:
        raise app.UsageError("Name at least one run directory.")
    runs = [runs_lib.load_run(d) for d in run_dirs]
    print(runs_lib.markdown_table(runs))
    runs_lib.plot_curves(run_dirs, _OUTPUT.value)
    print(f"Curves: {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
