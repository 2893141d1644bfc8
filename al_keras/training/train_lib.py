"""`train_and_evaluate(config, workdir)`: everything `train.py` does.

Outputs in `workdir`: `config.json`; `metrics.csv` (one row per epoch: the
training logs, `val_*` = test set, `val_exit_<i>_accuracy`; identical for
reruns of a config and seed on the same machine); `timings.csv`
(`epoch_seconds` per epoch); `tensorboard/` (the same scalars);
`checkpoints/epoch_<k>.keras` (the model with every optimizer's state after
epoch k, the last two kept); `results.json` (with the Keras `backend` and
the `input_pipeline` it ran on); `saved_model/`; `curves.png`;
for text sets `vocabulary.txt` (the vectorizer's words, one a line, from
id 2: a rerun reuses it instead of adapting anew).
Every file is written atomically (a reader, or a run killed at any moment,
sees the old file or the new one, never a part).

Without TensorFlow (Keras' JAX backend), the digits and MNIST-format idx
folders train from NumPy batches (`datasets.load`); what needs TensorFlow
(the other data sets, `distribute` mirrored and multi_worker) stops the
run before the workdir is touched with a `TensorFlowRequiredError` naming
it, and the parts of the outputs that need it (`tensorboard/`,
`saved_model/`) are left out, each said in one line.

Rerunning with the same config and workdir continues after the last
finished epoch, exactly as the uninterrupted run would have: epoch e's data
order depends only on the seed and e (`datasets.Data.train_epochs`).  A
checkpoint that cannot be loaded, or that holds another model, stops the
run with `CheckpointError`; nothing is deleted or overwritten.
"""

import contextlib
import json
import math
import os
import re

import keras

from al_keras import distribute, models
from al_keras.core import early_exit, input_checks, nonfinite
from al_keras.core.schedules import OriginalSchedule
from al_keras.data import datasets
from al_keras.data.errors import (
    INSTALL_TENSORFLOW,
    TensorFlowRequiredError,
    tensorflow_available,
    tensorflow_required,
)
from al_keras.training import config_lib, runs
from al_keras.training import scores as scores_lib
from al_keras.training.callbacks import (
    EpochCheckpoint,
    EpochTimer,
    ExitAccuracy,
    MetricsLogger,
    checkpoints,
)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from; the message names it."""


class WorkdirError(RuntimeError):
    """A file of the workdir that contradicts its run (a vocabulary that is not
    the checkpoint's, a `saved_model` that is no SavedModel); the message
    names it.  Nothing is changed."""


# What train.py reports as one line (no traceback): errors in what the user
# gave, not in al_keras.
USER_ERRORS = (config_lib.ConfigError, datasets.DatasetUnavailableError, datasets.DataFileError,
               input_checks.InputDataError, nonfinite.NonFiniteLossError,
               CheckpointError, WorkdirError, distribute.StageFailedError,
               TensorFlowRequiredError)

# The `config.distribute` values that are `tf.distribute` strategies.
TF_DISTRIBUTE = ("mirrored", "multi_worker")


def finished_epochs(workdir):
    """How many epochs of the run in `workdir` are saved (resume continues there)."""
    found = checkpoints(os.path.join(workdir, "checkpoints"))
    return found[-1][0] if found else 0


def _write_json(path, value):
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    runs.replace_when_written(partial, path)


def _prepare_workdir(workdir, config):
    """Creates `workdir`, refusing one that holds a run of another config.

    A `config.json` written before a key (or a model option) existed
    matches a config that gives it its default (`config_lib.DEFAULTS`, the
    model's option defaults); it is then completed.

    Returns:
        `write()`, which writes `config.json` if the workdir has none: called
        once the data and the model are ready, so that a run that fails
        before leaves no config behind to refuse the next command.
    """
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write_probe")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise config_lib.ConfigError(f"workdir {workdir!r} cannot be written: {e}") from e
    config_json = json.loads(config.to_json())
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                previous = json.load(f)
        except ValueError as e:
            raise CheckpointError(
                f"{path} is not valid JSON ({e}); it records the config of the run "
                "in this workdir. Restore it, or choose another workdir.") from e
        added = {k: config_json[k] for k in config_lib.DEFAULTS
                 if k not in previous and config_json.get(k) == config_lib.DEFAULTS[k]}
        # Likewise a model option added since (e.g. sequence_pooling), at its default.
        options, before = config_json.get("model_options"), previous.get("model_options")
        if (isinstance(options, dict) and isinstance(before, dict)
                and "original" in options and "original" not in before):
            # Before `original` existed AL had the paper's settings, whose
            # sigmoid `original` now implies (an image model's activation
            # left open).
            before = {**before, "original": True}
            if (before.get("activation") == "sigmoid"
                    and config.model not in models.text_backbones.TEXT_BACKBONES):
                before["activation"] = None
            added["model_options"] = before
        if isinstance(options, dict) and isinstance(before, dict):
            defaults = json.loads(json.dumps(models.check_options(
                config.model, config.method, {}), default=list))
            new_options = {k: v for k, v in options.items()
                           if k not in before and k in defaults and v == defaults[k]}
            if new_options:
                added["model_options"] = {**before, **new_options}
        if added:
            previous.update(added)
            if previous == config_json:
                _write_json(path, config_json)
        if previous != config_json:
            changed = sorted(k for k in set(previous) | set(config_json)
                             if previous.get(k) != config_json.get(k))
            hint = ""
            if (previous.get("model_options") or {}).get("original") and not (
                    config_json.get("model_options") or {}).get("original"):
                hint = (" Its model has the paper's settings (al_keras's AL default "
                        "until December 2026): add `original` to the config argument "
                        "(e.g. --config=configs/digits.py:original).")
            raise config_lib.ConfigError(
                f"workdir {workdir!r} holds a run of another config (differing "
                f"keys: {changed}); rerun with the same config to resume it, or "
                f"choose another workdir.{hint}"
            )
        return lambda: None
    return lambda: _write_json(path, config_json)


def _compile(model, config, steps_per_epoch):
    if config.lr_schedule == "original":
        learning_rate = OriginalSchedule(
            config.lr, max(1, config.epochs * steps_per_epoch))
    else:
        learning_rate = config.lr
    # XLA compiles a step for one device: placed blocks compile each block's
    # step for its device where that pays (on GPUs: BlockParallel's "auto");
    # replicas on logical CPU devices run without it (XLA reaches variables
    # on CPU:0).
    jit_compile = config.jit_compile and config.distribute in ("none", "ray")
    if config.distribute == "blocks" and config.jit_compile:
        jit_compile = "auto"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  metrics=["accuracy"], jit_compile=jit_compile,
                  steps_per_execution=config.steps_per_execution,
                  on_nonfinite_loss=config.on_nonfinite_loss)


@contextlib.contextmanager
def dtype_policy(name):
    """Keras' global dtype policy is `name` inside (restored after)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_strategy(config):
    """The strategy of `config.distribute` (None for "none")."""
    placement = config.placement
    if placement != "auto":
        placement = [int(i) for i in placement.split(",")]
    ray_options = dict(num_stages=config.num_stages or None,
                       cpus_per_stage=config.cpus_per_stage or None,
                       gpus_per_stage=config.gpus_per_stage,
                       address=config.ray_address or None,
                       jit_compile=config.jit_compile)
    try:
        return distribute.make_strategy(config.distribute, config.num_devices,
                                        placement=placement,
                                        pipeline=config.pipeline,
                                        ray_options=ray_options,
                                        jit_compile="auto" if config.jit_compile else False)
    except (ValueError, RuntimeError, ImportError, ConnectionError) as e:
        raise config_lib.ConfigError(f"config.distribute={config.distribute!r}: "
                                     f"{e}") from e


def check_tensorflow(config):
    """Raises `TensorFlowRequiredError` (one line naming the part and how to
    install it) if `config` needs TensorFlow and it is not installed: its
    data set (`datasets.needs_tensorflow`), or a `tf.distribute` strategy.

    Raises:
        TensorFlowRequiredError: the first part that needs it.
        DataFileError: a `data_dir` with only some of its idx files.
    """
    if tensorflow_available():
        return
    reason = datasets.needs_tensorflow(config.dataset, config.data_dir or None,
                                       config.augment)
    if reason:
        raise TensorFlowRequiredError(reason)
    if config.distribute in TF_DISTRIBUTE:
        raise tensorflow_required(
            f"config.distribute={config.distribute!r} (tf.distribute's data "
            "parallelism, on Keras' tensorflow backend)",
            INSTALL_TENSORFLOW + " and --backend=tensorflow")


def train_and_evaluate(config, workdir, verbose=1):
    """Trains and evaluates the model of `config`, writing outputs to `workdir`.

    Args:
        config: an `ml_collections.ConfigDict` following `config_lib.SCHEMA`.
        workdir: output folder; an existing one of the same config is resumed.
        verbose: Keras' verbosity (1: progress bar).

    Returns:
        The results dict also written to `results.json`.

    Raises:
        One of `USER_ERRORS`, naming the problem: a bad config, data that
        cannot be read or used, a non-finite loss (the last checkpoint is
        named), a checkpoint that cannot be resumed from, or a part that
        needs TensorFlow where it is not installed (before anything is
        written).
    """
    config_lib.validate(config)
    check_tensorflow(config)
    export_dir = os.path.join(workdir, "saved_model")
    if config.export and os.path.lexists(export_dir) and not _is_saved_model(export_dir):
        raise WorkdirError(
            f"{export_dir} exists but is no SavedModel (no saved_model.pb in it), so the "
            "run could not export its model there; move it away, or set "
            "config.export=false.")
    strategy = make_strategy(config)  # Splits the CPU: before any TF op.
    created = not os.path.isdir(workdir)
    write_config = _prepare_workdir(workdir, config)
    try:
        return _train_and_evaluate(config, workdir, verbose, strategy, write_config,
                                   export_dir)
    except BaseException:
        # A run that failed before it wrote anything leaves no empty workdir
        # for a later `report` or rerun to misread.
        if created and os.path.isdir(workdir) and not os.listdir(workdir):
            os.rmdir(workdir)
        raise


def _is_saved_model(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def _train_and_evaluate(config, workdir, verbose, strategy, write_config, export_dir):
    if config.deterministic:  # For the whole process: TF cannot turn it off.
        enable_determinism()
    keras.utils.set_random_seed(config.seed)

    vocabulary_path = os.path.join(workdir, "vocabulary.txt")
    try:
        data = datasets.load(
            config.dataset, batch_size=config.batch_size, seed=config.seed,
            data_dir=config.data_dir or None, augment=config.augment,
            test_batch_size=config.test_batch_size,
            max_train_examples=config.max_train_examples,
            max_test_examples=config.max_test_examples,
            validation_examples=config.validation_examples,
            sequence_length=config.sequence_length, vocab_size=config.vocab_size,
            with_words=config.with_words, vocabulary=runs.read_vocabulary(vocabulary_path),
        )
    except datasets.DataFileError:
        raise
    except ValueError as e:  # A value of the config that this data cannot take.
        message = str(e)
        raise config_lib.ConfigError(
            ("config." if re.match(r"[a-z_]+=", message) else "") + message) from None
    # Again: preparing a data set (TFDS' first build of it) draws random
    # numbers of its own, and a run must not depend on whether it prepared.
    keras.utils.set_random_seed(config.seed)
    steps_per_epoch = math.ceil(data.num_train / config.batch_size)

    checkpoint_dir = os.path.join(workdir, "checkpoints")
    if os.path.isdir(checkpoint_dir):  # Left by a run killed while saving.
        for name in os.listdir(checkpoint_dir):
            if name.startswith("partial-"):
                os.remove(os.path.join(checkpoint_dir, name))
    finished = checkpoints(checkpoint_dir)
    # The config's model, built outside the strategy when only its weight
    # shapes are needed (to check a checkpoint against them).
    expected = _new_model(config, data) if finished else None
    with distribute.strategy_scope(strategy), dtype_policy(config.dtype_policy):
        if finished:
            initial_epoch, path = finished[-1]
            model = _load_checkpoint(
                path, expected, finished,
                check=lambda loaded: _check_vocabulary(loaded, data, path, vocabulary_path))
            print(f"Resuming from {path} (epoch {initial_epoch} finished).")
        else:
            initial_epoch = 0
            model = _new_model(config, data)
            _compile(model, config, steps_per_epoch)
        # Rows of epochs that were logged but not checkpointed are redone.
        runs.truncate_metrics(workdir, initial_epoch)
    write_config()
    if data.preprocessor is not None and not os.path.exists(vocabulary_path):
        runs.write_vocabulary(vocabulary_path, data.preprocessor)
    if isinstance(strategy, distribute.RayPipeline):
        print(strategy.describe() + ".")
    elif isinstance(strategy, distribute.BlockParallel):
        # Placement, measured costs, predicted speedup; below 1.1x it says so.
        print(strategy.describe(instead="--config.distribute=ray") + ".")
    elif strategy is not None:
        print(f"Data parallel over {strategy.num_replicas_in_sync} replicas "
              f"({type(strategy).__name__}).")

    callbacks = [EpochTimer()]
    is_al = config.method == "al"
    if is_al and config.eval_exits:
        callbacks.append(ExitAccuracy(data.test))
    callbacks.append(MetricsLogger(workdir))
    if tensorflow_available():  # Keras' TensorBoard writes with tf.summary.
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard")))
    elif initial_epoch < config.epochs:
        print("TensorBoard logs (tensorboard/) not written: Keras' TensorBoard callback "
              f"needs TensorFlow, which is not installed: {INSTALL_TENSORFLOW}; "
              "metrics.csv holds the same scalars.")
    callbacks.append(EpochCheckpoint(checkpoint_dir))
    if initial_epoch < config.epochs:
        try:
            model.fit(data.train_epochs(initial_epoch), validation_data=data.test,
                      epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                      shuffle=False,  # train_epochs shuffles, seeded.
                      initial_epoch=initial_epoch, callbacks=callbacks,
                      verbose=verbose, check_data=config.check_data)
        except nonfinite.NonFiniteLossError as e:
            found = checkpoints(checkpoint_dir)
            raise nonfinite.NonFiniteLossError(
                f"{e} " + (f"The last good checkpoint is {found[-1][1]} (epoch "
                           f"{found[-1][0]}); rerunning resumes from it."
                           if found else "No epoch was finished.")) from None

    history = runs.read_metrics(workdir)
    train_seconds = float(sum(row.get("epoch_seconds", 0.0) for row in history))
    scores = scores_lib.test_scores(model, data.test, data.num_classes)
    results = {
        "method": config.method,
        "dataset": config.dataset,
        "model": config.model,
        "epochs": len(history),
        "test_accuracy": model.evaluate(data.test, verbose=0, return_dict=True,
                                        check_data=config.check_data)["accuracy"],
        "train_seconds": round(train_seconds, 2),
        "examples_per_second": (round(data.num_train * len(history) / train_seconds, 1)
                                if train_seconds else None),
        "test_macro_f1": scores["macro_f1"][-1],
        "params": model.count_params(),
        "num_train": data.num_train,
        "num_test": data.num_test,
        "seed": config.seed,
        "distribute": config.distribute,
        "backend": keras.backend.backend(),
        "input_pipeline": data.pipeline,
    }
    if isinstance(strategy, distribute.RayPipeline):
        results["stages"] = [[b + 1 for b in blocks] for blocks in strategy.stage_blocks]
        results["stage_hosts"] = strategy.stage_hosts
        results["stage_busy_share"] = (None if strategy.stage_busy is None
                                       else [round(b, 3) for b in strategy.stage_busy])
        results["examples_trained_per_block"] = strategy.examples_trained()
        strategy.shutdown()
    elif isinstance(strategy, distribute.BlockParallel):
        results["placement"] = strategy.placement
        results["examples_trained_per_block"] = strategy.examples_trained()
    elif strategy is not None:
        results["replicas"] = strategy.num_replicas_in_sync
    if is_al:
        results["exit_test_accuracy"] = scores["accuracy"]  # The same pass as the F1s.
        results["exit_test_macro_f1"] = scores["macro_f1"]
        results["adaptive_exit"] = calibrate_exit(model, config, data)
    _write_json(os.path.join(workdir, "results.json"), results)
    if config.export and _is_saved_model(export_dir):  # Written once, whole.
        print(f"Export kept: {export_dir} (written by an earlier run of this workdir).")
    elif config.export and not tensorflow_available():
        print(f"Export skipped: {tensorflow_required('A SavedModel (saved_model/)')} "
              "Set config.export=false to leave it out.")
    elif config.export and keras.backend.backend() != "tensorflow":
        print(f"Export skipped: a SavedModel is written on Keras' tensorflow backend, "
              f"this run is on {keras.backend.backend()}: export the last checkpoint "
              "there (keras.models.load_model, then model.export), or set "
              "config.export=false.")
    elif config.export:
        model.export(export_dir)
    if history:
        runs.plot_curves([workdir], os.path.join(workdir, "curves.png"))
    return results


def enable_determinism():
    """Deterministic ops for the rest of the process, on Keras' backend:
    TensorFlow's op determinism, or XLA's deterministic GPU ops for JAX
    (its CPU ops are deterministic; the flag counts where JAX has not yet
    started its GPU backend)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()


def calibrate_exit(model, config, data):
    """Calibrates `model`'s adaptive exit on `data.validation` (keeping the
    threshold in the model, so the export's `adaptive` signature has it)
    and measures it on the test set; None without a validation split."""
    if data.validation is None:
        print("Adaptive exit not calibrated: no validation split (set "
              "config.validation_examples, e.g. to a tenth of the training set).")
        return None
    calibration = early_exit.calibrate(
        model, data.validation, max_accuracy_drop=config.max_exit_accuracy_drop,
        confidence=config.exit_confidence, drop_bound_z=config.exit_drop_bound_z)
    result = calibration.to_dict()
    result["test"] = early_exit.evaluate_at(
        model, data.test, calibration.threshold, calibration.confidence,
        calibration.flops)
    test = result["test"]
    if result["threshold"] is None:
        print(f"Adaptive exit: no threshold within the drop saves compute on "
              f"{calibration.num_examples} validation examples; the model keeps the "
              "full path.")
    else:
        print(f"Adaptive exit: threshold {result['threshold']} ({calibration.confidence}) "
              f"on {calibration.num_examples} validation examples; test accuracy "
              f"{test['accuracy']:.4f} against {test['full_accuracy']:.4f} on the full "
              f"path, {early_exit.describe_saving(test['flops_saved'])}, mean exit "
              f"{test['mean_exit']:.2f}.")
    return result


def _new_model(config, data):
    """The untrained model of `config` (a ConfigError for bad option values)."""
    options = config.model_options.to_dict()
    extra = {}
    if data.preprocessor is not None:  # A text set: ids of its vectorizer.
        words = data.preprocessor.vocabulary_size()
        if options.get("vocab_size") not in (None, words):
            raise config_lib.ConfigError(
                f"config.model_options.vocab_size={options['vocab_size']} differs from "
                f"the {words} ids of the data's vectorizer; leave it unset (set "
                "config.vocab_size for the vectorizer).")
        options["vocab_size"] = words
        extra["preprocessor"] = data.preprocessor
    try:
        return models.get(config.model, input_shape=data.input_shape,
                          num_classes=data.num_classes, method=config.method,
                          **extra, **options)
    except ValueError as e:
        raise config_lib.ConfigError(f"config.model_options: {e}") from e


def _check_vocabulary(model, data, path, vocabulary_path):
    """Refuses a resumed text run whose data vectorizer (from
    `vocabulary.txt`, or adapted anew without it) is not the checkpoint's:
    the checkpoint's model is the truth, the file only its copy."""
    if getattr(model, "preprocessor", None) is None or data.preprocessor is None:
        return
    words = [str(w) for w in model.preprocessor.get_vocabulary()[2:]]
    used = [str(w) for w in data.preprocessor.get_vocabulary()[2:]]
    if used == words:
        return
    first = next((i for i, (a, b) in enumerate(zip(used, words)) if a != b),
                 min(len(used), len(words)))
    found = repr(used[first]) if first < len(used) else "the end of the file"
    wanted = repr(words[first]) if first < len(words) else "no more words"
    if os.path.exists(vocabulary_path):
        raise WorkdirError(
            f"{vocabulary_path} is not the vocabulary of checkpoint {path}: {len(used)} "
            f"words against its {len(words)}, line {first + 1} holds {found} where the "
            f"checkpoint has {wanted}. Restore the file (or delete it: it is then "
            "written anew); nothing was resumed or changed.")
    raise WorkdirError(
        f"The vectorizer adapted anew to the training texts ({len(used)} words) is not "
        f"the vocabulary of checkpoint {path} ({len(words)} words; word {first + 1}: "
        f"{found} against {wanted}): the data changed since the run began. Restore "
        f"its vocabulary as {vocabulary_path}, or choose another workdir.")


def _describe(model):
    return (f"{type(model).__name__} with {model.count_params():,} parameters in "
            f"{len(model.weights)} weights")


def _load_checkpoint(path, model, finished, check=None):
    """The model saved at `path`, checked against `model`, the config's
    (after `check(loaded)`, which checks the run's side files against it).

    Raises:
        CheckpointError: the file cannot be loaded (corrupted, truncated,
            from an incompatible version) or holds another model.  Nothing is
            removed: the message says what to move away to resume from the
            checkpoint before, or to start over.
    """
    before = [p for _, p in finished[:-1]]
    remedy = (f"Move it away to resume from {before[-1]}, or choose another workdir."
              if before else "Move it away to start over, or choose another workdir.")
    try:
        loaded = keras.models.load_model(path)
    except Exception as e:  # Any failure to load: reported, never ignored.
        raise CheckpointError(
            f"Checkpoint {path} cannot be loaded ({type(e).__name__}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); it is "
            f"corrupted or was written by an incompatible version. {remedy}") from e
    if check is not None:  # The run's side files against the checkpoint, first.
        check(loaded)
    expected = [tuple(w.shape) for w in model.weights]
    found = [tuple(w.shape) for w in loaded.weights]
    if getattr(loaded, "optimizer", None) is None:
        raise CheckpointError(f"Checkpoint {path} holds a model that was not compiled "
                              f"({_describe(loaded)}): it has no optimizer state to "
                              f"resume. {remedy}")
    if type(loaded) is not type(model) or found != expected:
        raise CheckpointError(
            f"Checkpoint {path} holds another model than this run's config makes: "
            f"{_describe(loaded)}, against {_describe(model)}. {remedy}")
    return loaded


def summarize(results):
    """One line per result key, for the end of a run."""
    return "\n".join(f"{k}: {v}" for k, v in sorted(results.items())
                     if not isinstance(v, (list, dict)) or k.endswith("accuracy"))
