"""The driver side of `RayPipeline`: starts the stages, feeds them, keeps Keras whole.

`Engine.train_function` replaces Keras' compiled train function: each call
reads `model.steps_per_execution` batches (Keras' own knob: one Ray call per
stage carries that many batches, which divides Ray's per-call overhead by
it) and starts call n on every stage whose input is there (stage 0 the
batches, stage k the object reference stage k-1 returned in call n-1).  It
then waits for the stages' call n - `steps_ahead` (so that each stage always
has its next call queued, and the driver runs at most that far ahead) and
returns the epoch's running per-block losses and metrics, tracked by the
driver's model.  Training metrics (e.g. accuracy) need each batch's
prediction decoded by every block's h_i: the last stage decodes it through
its own, then hands it back one stage per call, so a batch's metrics reach
the driver 2 (stages - 1) calls after the batch.  After an epoch's last
batch the engine drains the pipeline and brings the stages' weights and
optimizer states into the driver's model, so validation, checkpoints and
every `on_epoch_end` callback see the trained model.
"""

import collections
import math
import re
import time

import keras
import numpy as np
from tensorflow.errors import OutOfRangeError

from al_keras.core import keras_compat
from al_keras.distribute import ray_stage


class Engine:
    """The stages of one model, and the pipeline's state between steps."""

    def __init__(self, strategy, model):
        from al_keras.distribute.ray_pipeline import StageFailedError

        self._error = StageFailedError
        self.strategy, self.model = strategy, model
        self.ray = ray = strategy._ray
        blocks = strategy.stage_blocks
        count = len(blocks)
        cpus, gpus = strategy.stage_resources()
        config = keras.saving.serialize_keras_object(model)
        config.pop("compile_config", None)  # Each stage makes its own optimizers.
        shape = keras_compat.built_input_shape(model)[1:]
        self._forward = [None] * count  # Per stage: its last hand-over on,
        self._backward = [None] * count  # and back (decoded predictions).
        self._labels = collections.deque()  # (y, sample_weight) not yet scored.
        self._inflight = collections.deque()  # Per call: (results, passed on).
        worker = ray.remote(ray_stage.StageWorker)
        # Training metrics (e.g. accuracy) need each batch's decoded prediction.
        self.decodes = bool(keras_compat.user_metrics(model))
        self.stages = [
            worker.options(num_cpus=cpus, num_gpus=gpus).remote(
                config, shape, keras.optimizers.serialize(model.optimizer), stage,
                last=k == count - 1, threads=max(1, math.ceil(cpus)),
                jit_compile=strategy.jit_compile,
                on_nonfinite_loss=model.on_nonfinite_loss,
                decode_predictions=self.decodes)
            for k, stage in enumerate(blocks)]
        self.hosts = self._get([s.where.remote() for s in self.stages], "starting")
        strategy.stage_hosts = self.hosts
        print("RayPipeline stages started: " + ", ".join(
            f"stage {k} (blocks {', '.join(str(b + 1) for b in stage)}) on {host} pid {pid}"
            for k, (stage, (host, pid, _)) in enumerate(zip(blocks, self.hosts))) + ".")
        self.examples = [0] * model.num_blocks
        self.busy = [0.0] * count
        self.steps_per_epoch = None
        self._step_in_epoch = 0
        self._wall_start = None

    # ------------------------------------------------------------- training
    def train_function(self, iterator):
        """One call of Keras' fit loop (replaces its compiled train function):
        `model.steps_per_execution` batches (fewer at an epoch's end), which
        each stage trains in one call, one after the other."""
        batches = []
        wanted = self.model.steps_per_execution
        if self.steps_per_epoch:
            wanted = min(wanted, self.steps_per_epoch - self._step_in_epoch)
        for _ in range(max(1, wanted)):
            try:
                data = next(iterator)
            except (StopIteration, OutOfRangeError):
                if batches:
                    break
                raise StopIteration from None
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            x, y = np.asarray(x), np.asarray(y)
            sample_weight = (np.ones(len(x), "float32") if sample_weight is None
                             else np.asarray(sample_weight, "float32").reshape(-1))
            batches.append((x, y, sample_weight))
        if not keras_compat.compiled_metrics_built(self.model):
            # Keras builds them when it traces its own train function.
            keras_compat.symbolic_build(self.model, batches[0])
        if self.decodes:
            self._labels.extend((y, w) for _, y, w in batches)
        self._step(batches)
        self.model.optimizer.iterations.assign_add(len(batches))
        self._step_in_epoch += len(batches)
        if self.steps_per_epoch and self._step_in_epoch >= self.steps_per_epoch:
            self.finish_epoch()
        return self.logs()

    def _learning_rate(self):
        rate = self.model.optimizer.learning_rate
        return float(rate.numpy()) if isinstance(rate, keras.Variable) else None

    def _step(self, batches):
        """Starts one call on every stage that has work: stage 0 the new
        batches, stage k what stage k-1 handed on in the previous call, and
        (decoding) what stage k+1 handed back."""
        rate, count, started, passed = self._learning_rate(), len(self.stages), [], []
        forward, backward = [None] * count, [None] * count
        for k, stage in enumerate(self.stages):
            inputs = batches if k == 0 else self._forward[k - 1]
            decoding = self._backward[k + 1] if k + 1 < count else None
            if inputs is None and decoding is None:
                continue
            # What a stage hands to another is never read here; after a
            # failure it is (`_discard`), so that Ray reports no error twice.
            passed += [(k - 1, inputs)] if k > 0 and inputs is not None else []
            passed += [(k + 1, decoding)] if decoding is not None else []
            handed_on, handed_back, stats = stage.step.options(num_returns=3).remote(
                inputs, decoding, rate)
            # A reference that carries nothing (None) is collected too: Ray
            # reports a failed result that was never read.
            if inputs is not None and k + 1 < count:
                forward[k] = handed_on
            else:
                started.append((k, handed_on))
            if self.decodes and k > 0 and (decoding is not None or (
                    inputs is not None and k + 1 == count)):
                backward[k] = handed_back
            else:
                started.append((k, handed_back))
            started.append((k, stats))
        self._forward, self._backward = forward, backward
        self._inflight.append((started, passed))
        while len(self._inflight) > self.strategy.steps_ahead:
            self._collect(*self._inflight.popleft())

    def _collect(self, started, passed=()):
        """Reads one call's results (`started`) into the trackers and metrics."""
        trackers = list(zip(self.model.assoc_loss_trackers, self.model.ae_loss_trackers))
        for position, (k, reference) in enumerate(started):
            try:
                stats = self._get(reference, "training", stage=k)
            except self._error:
                self._discard([r for _, r in started[position + 1:]]
                              + [r for _, r in passed])
                raise
            if not isinstance(stats, dict):  # An end's (empty) hand-over.
                continue
            self.busy[k] += stats["busy_seconds"]
            if stats.get("decoded"):
                self._update_metrics(stats["decoded"])
            if not stats["losses"]:
                continue
            losses, applied = np.stack(stats["losses"]), np.stack(stats["applied"])
            for row, index in enumerate(self.strategy.stage_blocks[k]):
                for column, tracker in enumerate(trackers[index]):
                    done = applied[:, row, column]
                    if done.any():
                        tracker.update_state(losses[done, row, column])
                    if not done.all():
                        self.model.skipped_updates_tracker.update_state(
                            np.ones(int((~done).sum()), "float32"))
                self.examples[index] += stats["examples"]

    def _update_metrics(self, decoded):
        """The compiled metrics of the batches whose predictions came back."""
        model = self.model
        for t in decoded:
            y, sample_weight = self._labels.popleft()
            model.compute_metrics(None, y, model.scores(t), sample_weight)

    def drain(self):
        """Runs the calls that finish the batches still in the pipeline (and
        bring their decoded predictions back)."""
        while any(r is not None for r in self._forward + self._backward):
            self._step(None)
        while self._inflight:
            self._collect(*self._inflight.popleft())

    def finish_epoch(self):
        """Drains the pipeline and brings the stages' state to the driver."""
        self.drain()
        self.pull()
        self._step_in_epoch = 0

    def logs(self):
        """The epoch's running local losses and training metrics, as the
        driver's model tracks them."""
        return {name: float(value) for name, value in self.model.get_metrics_result().items()}

    # ---------------------------------------------------------------- state
    def _parts(self, index):
        model = self.model
        return ray_stage.block_variables(model.blocks[index], model.assoc_optimizers[index],
                                         model.ae_optimizers[index])

    def push(self):
        """Loads the driver's weights and optimizer states into the stages."""
        self._get([stage.set_state.remote(ray_stage.read_state(self._parts, blocks))
                   for stage, blocks in zip(self.stages, self.strategy.stage_blocks)],
                  "loading")

    def pull(self):
        """Loads the stages' weights and optimizer states into the driver's model."""
        for state in self._get([s.get_state.remote() for s in self.stages], "saving"):
            ray_stage.load_state(self._parts, state)

    def _get(self, references, doing, stage=None):
        """`ray.get`, a failure raised as `StageFailedError` naming the stage."""
        many = isinstance(references, list)
        stages = range(len(self.stages)) if stage is None else [stage]
        results = []
        for k, reference in zip(stages, references if many else [references]):
            try:
                results.append(self.ray.get(reference))
            except self.ray.exceptions.RayError as e:
                host = (f" on {self.hosts[k][0]} (pid {self.hosts[k][1]}, Ray node "
                        f"{self.hosts[k][2][:8]})" if getattr(self, "hosts", None) else "")
                blocks = ", ".join(str(b + 1) for b in self.strategy.stage_blocks[k])
                self._discard()
                raise self._error(f"Stage {k} (blocks {blocks}){host} failed while "
                                  f"{doing}: {_reason(e, self.ray)}") from e
        return results if many else results[0]

    def _discard(self, also=()):
        """Collects the results still in flight after a stage failed, so that
        Ray does not report each failed one again when the process exits."""
        references = list(also) + [r for started, passed in self._inflight
                                   for _, r in started + passed]
        references += [r for r in self._forward + self._backward if r is not None]
        self._inflight.clear()
        self._forward = [None] * len(self.stages)
        self._backward = [None] * len(self.stages)
        self._labels.clear()
        for reference in references:
            try:
                self.ray.get(reference, timeout=10)
            except Exception:  # Expected: they depend on the dead stage.
                pass

    def callback(self):
        return _EpochSync(self)

    def close(self):
        for stage in getattr(self, "stages", []):
            self.ray.kill(stage)
        self.stages = []


def _reason(error, ray):
    """Why a stage failed, in one line: the task's own exception, or Ray's."""
    if isinstance(error, ray.exceptions.OutOfMemoryError):
        used = re.search(r"was ([\d.]+GB) used / ([\d.]+GB) limit", str(error))
        return ("out of memory: Ray's memory monitor killed it" + (
            f" (the node used {used.group(1)} of {used.group(2)}, above "
            "RAY_memory_usage_threshold)" if used else "") + "; give it smaller "
            "batches, fewer stages on that node, or a node with more memory.")
    cause = getattr(error, "cause", None) or error  # A task's own exception.
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"


class _EpochSync(keras.callbacks.Callback):
    """Loads the stages before a fit; finishes each epoch (when `fit` does not
    know its length, after its last batch); records the stages' busy shares."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def on_train_begin(self, logs=None):
        self.engine.steps_per_epoch = self.params.get("steps")
        self.engine.busy = [0.0] * len(self.engine.stages)
        self.engine._wall_start = time.perf_counter()
        self.engine.push()

    def on_epoch_begin(self, epoch, logs=None):
        self.engine._step_in_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.engine._step_in_epoch:
            self.engine.finish_epoch()

    def on_train_end(self, logs=None):
        engine = self.engine
        if engine._step_in_epoch or engine._inflight:
            engine.finish_epoch()
        wall = time.perf_counter() - engine._wall_start
        engine.strategy.stage_busy = [b / wall for b in engine.busy]
