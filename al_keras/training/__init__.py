"""What `train.py` runs, as a library.

* `config_lib.py` -- checks a config (`configs/*.py`) before anything is built;
* `train_lib.py` -- `train_and_evaluate(config, workdir)`: data, model,
  strategy, fit, resume, results; `callbacks.py` -- its epoch timer, exit
  accuracies, checkpoints and CSV logs;
* `runs.py` -- reading and writing a workdir; `report.py` -- the table and
  plots of several workdirs (`python -m al_keras.training.report`);
* `quickstart.py` -- AL against BP on the digits
  (`python -m al_keras.training.quickstart`).
"""
