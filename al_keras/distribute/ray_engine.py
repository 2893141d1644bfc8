"""The driver side of `RayPipeline`: starts the stages, feeds them, keeps Keras whole.

`Engine.train_function` replaces Keras' compiled train function: each call
reads one batch, starts step n on every stage whose input is there (stage 0
the batch, stage k the object reference stage k-1 returned in step n-1),
waits for the stages' step n - `steps_ahead` (so that each stage always has
the next step queued, and the driver runs at most that far ahead)
and returns the epoch's running per-block losses, tracked by the driver's
model.  After an epoch's last batch it drains the pipeline and brings the
stages' weights and optimizer states into the driver's model, so validation,
checkpoints and every `on_epoch_end` callback see the trained model.
"""

import collections
import math
import time

import keras
import numpy as np

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
        shape = tuple(next(iter(model._build_shapes_dict.values())))[1:]
        worker = ray.remote(ray_stage.StageWorker)
        self.stages = [
            worker.options(num_cpus=cpus, num_gpus=gpus).remote(
                config, shape, keras.optimizers.serialize(model.optimizer), stage,
                last=k == count - 1, threads=max(1, math.ceil(cpus)),
                jit_compile=strategy.jit_compile,
                on_nonfinite_loss=model.on_nonfinite_loss)
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
        self._pending = [None] * count
        self._inflight = collections.deque()  # Per step started: [(stage, stats)].
        self._wall_start = None

    # ------------------------------------------------------------- training
    def train_function(self, iterator):
        """One training step of Keras' fit loop (replaces its compiled one)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(next(iterator))
        x, y = np.asarray(x), np.asarray(y)
        sample_weight = (np.ones(len(x), "float32") if sample_weight is None
                         else np.asarray(sample_weight, "float32").reshape(-1))
        metrics = self.model._compile_metrics
        if metrics is not None and not metrics.built:
            # Keras builds them when it traces its own train function.
            self.model._symbolic_build(data_batch=(x, y, sample_weight))
        self._step((x, y, sample_weight))
        self.model.optimizer.iterations.assign_add(1)
        self._step_in_epoch += 1
        if self.steps_per_epoch and self._step_in_epoch >= self.steps_per_epoch:
            self.finish_epoch()
        return self.logs()

    def _learning_rate(self):
        rate = self.model.optimizer.learning_rate
        return float(rate.numpy()) if isinstance(rate, keras.Variable) else None

    def _step(self, batch):
        rate, pending, started = self._learning_rate(), [None] * len(self.stages), []
        for k, stage in enumerate(self.stages):
            inputs = batch if k == 0 else self._pending[k - 1]
            if inputs is None:
                continue
            handed_on, stats = stage.step.options(num_returns=2).remote(inputs, rate)
            if k + 1 < len(self.stages):
                pending[k] = handed_on
            else:  # None, but collected too: Ray reports a failed result never read.
                started.append((k, handed_on))
            started.append((k, stats))
        self._pending = pending
        self._inflight.append(started)
        while len(self._inflight) > self.strategy.steps_ahead:
            self._collect(self._inflight.popleft())

    def _collect(self, started):
        trackers = zip(self.model.assoc_loss_trackers, self.model.ae_loss_trackers)
        trackers = list(trackers)
        for position, (k, reference) in enumerate(started):
            try:
                stats = self._get(reference, "training", stage=k)
            except self._error:
                self._discard(r for _, r in started[position + 1:])
                raise
            if stats is None:  # The last stage's (empty) hand-over.
                continue
            for row, index in enumerate(self.strategy.stage_blocks[k]):
                for tracker, loss, applied in zip(trackers[index], stats["losses"][row],
                                                  stats["applied"][row]):
                    if applied:
                        tracker.update_state(float(loss))
                    else:
                        self.model.skipped_updates_tracker.update_state(1.0)
                self.examples[index] += stats["examples"]
            self.busy[k] += stats["busy_seconds"]

    def drain(self):
        """Runs the steps that finish the batches still in the pipeline."""
        while any(p is not None for p in self._pending[:-1]):
            self._step(None)
        while self._inflight:
            self._collect(self._inflight.popleft())

    def finish_epoch(self):
        """Drains the pipeline and brings the stages' state to the driver."""
        self.drain()
        self.pull()
        self._step_in_epoch = 0

    def logs(self):
        """The epoch's running local losses (the driver's loss trackers)."""
        model = self.model
        tracked = [model.total_loss_tracker, *model.assoc_loss_trackers,
                   *model.ae_loss_trackers]
        if model.on_nonfinite_loss == "skip":
            tracked.append(model.skipped_updates_tracker)
        return {m.name: float(m.result()) for m in tracked}

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
                host = (f" on {self.hosts[k][0]} (pid {self.hosts[k][1]})"
                        if getattr(self, "hosts", None) else "")
                blocks = ", ".join(str(b + 1) for b in self.strategy.stage_blocks[k])
                cause = getattr(e, "cause", None) or e  # A task's own exception.
                lines = str(cause).strip().splitlines()
                self._discard()
                raise self._error(
                    f"Stage {k} (blocks {blocks}){host} failed while {doing}: "
                    f"{type(cause).__name__}: {lines[-1] if lines else ''}") from e
        return results if many else results[0]

    def _discard(self, also=()):
        """Collects the results still in flight after a stage failed, so that
        Ray does not report each failed one again when the process exits."""
        references = list(also) + [r for step in self._inflight for _, r in step]
        references += [p for p in self._pending if p is not None]
        self._inflight.clear()
        self._pending = [None] * len(self._pending)
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
