"""`RayPipeline`: pipeline stages of an `ALModel` as processes, on Ray.

Each stage is a Ray actor (`ray_stage.StageWorker`, a process of its own with
its own thread pools) holding a contiguous run of blocks and their optimizers,
its local step compiled by XLA.  In step n, stage k trains on what stage k-1
handed it in step n-1; only forward activations (`s`, `t`, sample weights)
cross between stages, through Ray's object store.  The driver, the process
that called `fit`, only orchestrates: it feeds the batches, passes each
stage's output on as an object reference, and keeps the Keras side (logs,
callbacks, validation, saving) on its own copy of the model, whose weights
and optimizer states the stages send back after every epoch.

Each epoch fills and drains the pipeline (`num_stages - 1` steps), so within
an epoch every example trains every block exactly once, and the updates are
those of sequential AL (`ALModel`'s sequential step already hands block k the
`s_{k-1}` computed before block k-1's update).

Example:

>>> strategy = al_keras.distribute.RayPipeline(num_stages=2)  # doctest: +SKIP
>>> with strategy.scope():
...     model = al_keras.models.get("cnn", input_shape=(28, 28, 1), num_classes=10)
...     model.compile(optimizer="adam", metrics=["accuracy"])
>>> model.fit(x, y, epochs=5, validation_data=(x_test, y_test))
>>> strategy.shutdown()
"""

import os
import re

from al_keras.core import executor as executor_lib
from al_keras.data.datasets import can_connect
from al_keras.distribute import pipeline_simulator
from al_keras.distribute.block_parallel import check_backend

RAY_INSTALL = 'pip install -e ".[ray]"'
CONNECT_TIMEOUT_S = 5.0


class StageFailedError(RuntimeError):
    """A pipeline stage's process died or failed; the message names it."""


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            f"distribute=ray needs Ray, which is not installed: {RAY_INSTALL} "
            "(or pip install 'ray==2.60.0').") from e
    return ray


class StageResourceError(ValueError):
    """Stages that need more CPUs or GPUs than there are; `option` is the
    argument to lower ("cpus_per_stage" or "gpus_per_stage")."""

    def __init__(self, message, option):
        super().__init__(message)
        self.option = option


def check_arguments(num_stages=None, cpus_per_stage=None, gpus_per_stage=0,
                    placement="auto"):
    """The types and ranges of `RayPipeline`'s arguments, before anything
    starts (a ValueError naming the value and what is allowed)."""
    if num_stages is not None and (isinstance(num_stages, bool)
                                   or not isinstance(num_stages, int) or num_stages < 1):
        raise ValueError(f"num_stages must be an int >= 1, got {num_stages!r}.")
    for name, value in (("cpus_per_stage", cpus_per_stage), ("gpus_per_stage", gpus_per_stage)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value >= 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
    if placement != "auto" and (isinstance(placement, str) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in placement)):
        raise ValueError(f"placement must be 'auto' or one stage index (an int >= 0) "
                         f"per block, got {placement!r}.")


def plan_stages(num_blocks, num_stages=None, placement="auto"):
    """The stage count, checked against the model's blocks, and the explicit
    placement's stage index per block (None for `"auto"`), checked too
    (arguments as `check_arguments` lets them through).

    Pure: no Ray, no model.  `RayPipeline.place` and the config check
    (`config_lib.validate`, before anything starts) share it.

    Raises:
        ValueError naming the value and what is allowed.
    """
    stages = num_stages or min(num_blocks, os.cpu_count() or 1)
    if stages > num_blocks:
        raise ValueError(
            f"num_stages={stages} is more stages than the model's {num_blocks} "
            f"blocks (a stage holds at least one); give num_stages <= {num_blocks}.")
    if placement == "auto":
        return stages, None
    try:
        indices = [int(i) for i in placement]
    except (TypeError, ValueError):
        indices = None
    if indices is None or len(indices) != num_blocks or sorted(indices) != indices or set(
            indices) != set(range(stages)):
        raise ValueError(
            f"placement {placement!r}: give one stage index per block ({num_blocks}), "
            f"non-decreasing, using every stage 0..{stages - 1}, or 'auto'.")
    return stages, indices


def check_stage_resources(stages, cpus_per_stage, gpus_per_stage, total_cpus, total_gpus,
                          where="the Ray cluster"):
    """(CPUs, GPUs) of each stage, checked against what `where` has (a
    `StageResourceError` naming the option to lower)."""
    cpus = cpus_per_stage or min(1.0, (total_cpus or 1) / stages)
    gpus = gpus_per_stage or 0
    for name, need, have in (("CPU", cpus * stages, total_cpus or 0),
                             ("GPU", gpus * stages, total_gpus or 0)):
        if need > have + 1e-9:
            option = f"{name.lower()}s_per_stage"
            raise StageResourceError(
                f"{stages} stages of {need / stages:g} {name}s need {need:g} {name}s, "
                f"but {where} has {have:g}; lower num_stages or {option}.", option)
    return cpus, gpus


class RayPipeline(executor_lib.Executor):
    """Trains an `ALModel`'s blocks in pipelined processes, on Ray.

    Used like a strategy: models created under `strategy.scope()` are
    trained by the stages when `fit` is called; `evaluate`, `predict`,
    `save` and `export` run on the driver's model as usual.  It is their
    `al_keras.core.executor.Executor`: it plans the stages when the model
    is built (`build`), starts them and syncs each epoch (`fit_callbacks`),
    and gives the model the train function that feeds them
    (`make_train_function`).  TensorFlow backend only (the stages train
    with TensorFlow).

    Args:
        num_stages: processes (default: one per CPU core, at most one per
            block).
        cpus_per_stage: Ray CPUs reserved by each stage (default: the
            machine's cores shared evenly, at most 1 each); also its
            TensorFlow threads (rounded up, at least 1).
        gpus_per_stage: Ray GPUs of each stage (default 0).
        address: a Ray cluster's address (`ray start --head` prints it), or
            None to start a local Ray sized to this machine.
        placement: `"auto"` (contiguous blocks per stage balanced by each
            block's measured step cost) or one stage index per block.
        jit_compile: compile each stage's step with XLA (default True).
        profile_batch_size: batch size of the cost measurement.
        steps_ahead: steps the driver submits before it waits for the
            oldest one's results (2: each stage has its next step queued
            while it computes).

    Attributes (once a model is built in the scope):
        stage_blocks: the block indices of each stage.
        block_costs: measured seconds per training step of each block (auto).
        predicted_speedup: the simulator's speedup of the pipeline over one
            process, from the block costs (no transfer costs).
        stage_busy: per stage, its share of the last fit's wall time spent
            computing.
        stage_hosts: `(host, pid, Ray node id)` of each stage.
    """

    pipeline = False  # No in-process pipelined step on the driver.

    def __init__(self, num_stages=None, cpus_per_stage=None, gpus_per_stage=0,
                 address=None, placement="auto", jit_compile=True,
                 profile_batch_size=32, steps_ahead=2):
        check_backend("RayPipeline")
        check_arguments(num_stages, cpus_per_stage, gpus_per_stage, placement)
        self._ray = _import_ray()
        self.num_stages = num_stages
        self.cpus_per_stage = cpus_per_stage
        self.gpus_per_stage = gpus_per_stage
        self.address = address
        self.requested_placement = placement
        self.jit_compile = bool(jit_compile)
        self.profile_batch_size = int(profile_batch_size)
        self.steps_ahead = max(1, int(steps_ahead))
        self._started_ray = False
        self._connect()
        self.stage_blocks = None
        self.block_costs = None
        self.predicted_speedup = None
        self.stage_busy = None
        self.stage_hosts = None
        self._engine = None

    def scope(self):
        """Context in which the `ALModel` is created and compiled."""
        return executor_lib.scope(self)

    def _connect(self):
        """Joins the Ray cluster at `address`, or starts a local one (once)."""
        ray = self._ray
        if ray.is_initialized():
            return
        options = dict(include_dashboard=False, configure_logging=False,
                       log_to_driver=False)
        host_port = re.fullmatch(r"([^:/]+):(\d+)", self.address or "")
        if host_port and not can_connect(host_port.group(1), int(host_port.group(2)),
                                         timeout=CONNECT_TIMEOUT_S):
            # ray.init would retry for minutes.
            raise ConnectionError(
                f"RayPipeline: cannot reach a Ray cluster at {self.address!r} (no "
                f"answer in {CONNECT_TIMEOUT_S:g} s); start one with `ray start "
                "--head`, or leave the address empty for a local Ray.")
        try:
            if self.address:
                ray.init(address=self.address, **options)
            else:
                ray.init(num_cpus=os.cpu_count(), **options)
                self._started_ray = True
        except (ConnectionError, RuntimeError, ValueError) as e:
            lines = str(e).strip().splitlines()
            raise ConnectionError(
                f"RayPipeline: cannot reach a Ray cluster at {self.address!r} "
                f"({type(e).__name__}: {lines[0] if lines else ''}); start one with "
                "`ray start --head`, or leave the address empty for a local Ray."
            ) from None

    def stage_resources(self):
        """(CPUs, GPUs) of each stage, checked against the cluster's."""
        total = self._ray.cluster_resources()
        try:
            return check_stage_resources(len(self.stage_blocks), self.cpus_per_stage,
                                         self.gpus_per_stage, total.get("CPU", 0),
                                         total.get("GPU", 0))
        except ValueError as e:
            raise ValueError(f"RayPipeline: {e}") from None

    def cluster(self):
        """`(address, nodes, CPUs, GPUs)` of the Ray cluster joined or started."""
        ray = self._ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        total = ray.cluster_resources()
        address = ray.get_runtime_context().gcs_address
        return address, len(nodes), total.get("CPU", 0), total.get("GPU", 0)

    # ---------------------------------------------------------------- plan
    def place(self, model, input_shape):
        """Chooses each stage's blocks; the driver's model stays unplaced."""
        num_blocks = model.num_blocks
        try:
            stages, indices = plan_stages(num_blocks, self.num_stages,
                                          self.requested_placement)
        except ValueError as e:
            raise ValueError(f"RayPipeline: {e}") from None
        if indices is None:
            if stages == 1:
                indices = [0] * num_blocks
            else:
                from al_keras.distribute.block_parallel import measure_block_costs

                profile = measure_block_costs(model, input_shape, self.profile_batch_size)
                self.block_costs = [c.compute for c in profile]
                indices = pipeline_simulator.balanced_partition(self.block_costs, stages)
                slowest = max(sum(c for c, i in zip(self.block_costs, indices) if i == k)
                              for k in range(stages))
                self.predicted_speedup = sum(self.block_costs) / slowest
        self.stage_blocks = [[b for b, i in enumerate(indices) if i == k]
                             for k in range(stages)]
        self.stage_resources()  # Fails now, not at fit, if the cluster lacks them.
        return None

    def describe(self):
        """One line: the stages, their blocks and the predicted speedup."""
        stages = ", ".join(
            f"stage {k}: blocks {', '.join(str(b + 1) for b in blocks)}"
            for k, blocks in enumerate(self.stage_blocks or []))
        predicted = (f"; predicted speedup {self.predicted_speedup:.2f}x over one process"
                     if self.predicted_speedup else "")
        where = ""
        if self._ray.is_initialized():
            address, nodes, cpus, gpus = self.cluster()
            kind = ("started a local Ray" if self._started_ray
                    else f"joined the Ray cluster of address={self.address!r}"
                    if self.address else "on this process's Ray")
            where = (f"; {kind} at {address}: {nodes} node{'s' * (nodes != 1)}, "
                     f"{cpus:g} CPUs, {gpus:g} GPUs")
        return (f"RayPipeline: {len(self.stage_blocks or [])} stages ({stages})"
                f"{predicted}{where}")

    # ------------------------------------------------------------ executor
    def build(self, model, input_shape):
        """Plans the stages (`place`) when the driver's model is built."""
        self.place(model, input_shape)

    def fit_callbacks(self, model):
        """The start of the stages and their sync around each epoch."""
        if not model.built or not model.compiled:
            raise ValueError("Under a RayPipeline, build and compile the model "
                             "before fit (al_keras.models.get builds it).")
        return [self.start_fit(model)]

    def make_train_function(self, model):
        """The engine's train function, which feeds the stages, once `fit`
        started them for `model` (else None: the model's own step)."""
        if self._engine is None or self._engine.model is not model:
            return None
        return self._engine.train_function

    # ------------------------------------------------------------------ fit
    def start_fit(self, model):
        """Makes the stages (first time), makes the engine's pipelined step
        `model.train_function`, and returns the callback that fills, drains
        and syncs the weights around each epoch."""
        from al_keras.distribute import ray_engine

        if self._engine is None or self._engine.model is not model:
            if self._engine is not None:
                self._engine.close()
            self._connect()
            self._engine = ray_engine.Engine(self, model)
        model.make_train_function(force=True)  # Asks `make_train_function`.
        return self._engine.callback()

    def sync(self):
        """Brings the stages' weights and optimizer states to the driver's model
        now (they come at each epoch's end anyway)."""
        if self._engine is not None:
            self._engine.drain()
            self._engine.pull()

    def examples_trained(self):
        """Per block, how many examples it has trained on in this process's fits."""
        return None if self._engine is None else list(self._engine.examples)

    def shutdown(self):
        """Ends the stage processes (a later `fit` starts new ones)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._started_ray and self._ray.is_initialized():
            self._ray.shutdown()
            self._started_ray = False
