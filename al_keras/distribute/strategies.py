"""Choosing a strategy: `make_strategy` for `config.distribute`, and
splitting one device into several (`split_cpu`, `split_gpu`).

* `"blocks"` -- `BlockParallel` (model parallelism, one block per device).
* `"mirrored"` / `"multi_worker"` -- `tf.distribute.MirroredStrategy` /
  `MultiWorkerMirroredStrategy`: **data parallelism**; every replica holds
  the whole model and each block's gradients are all-reduced.  `ALModel`
  works under them as any Keras model does (`with strategy.scope(): model =
  ...; model.compile(...)`); several hosts are configured by `TF_CONFIG`
  (docs/several-devices.md).

Every kind but `"none"` needs Keras' TensorFlow backend; TensorFlow is
imported only when one is made, so that the package imports without it.
"""

import contextlib
import os
import shutil
import subprocess

import keras

from al_keras.distribute.block_parallel import BlockParallel, check_backend
from al_keras.distribute.ray_pipeline import RayPipeline

_TF_DISTRIBUTE = {"mirrored": "MirroredStrategy",
                  "multi_worker": "MultiWorkerMirroredStrategy"}


def _check_tf_distribute(kind):
    """A one-line ValueError unless tf.distribute's `kind` can run here."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        installed = False
    else:
        installed = True
    if not installed or keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"distribute={kind!r} (tf.distribute.{_TF_DISTRIBUTE[kind]}) needs "
            "TensorFlow and Keras' TensorFlow backend (pip install tensorflow; "
            "KERAS_BACKEND=tensorflow); on JAX, train one model per process.")


def split_cpu(num_devices, threads_per_device=1, concurrent_ops=None):
    """Splits the CPU into `num_devices` logical devices; returns their names.

    Must run before TensorFlow runs any op.  Sets TensorFlow's thread pools
    to `threads_per_device` threads per op and `concurrent_ops` (default
    `num_devices`) ops at a time, so that the devices work at the same time
    (on a CPU they share one pool).  Returns the first `num_devices` if the
    CPU is already split into at least that many.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) >= num_devices:
        return [d.name for d in tf.config.list_logical_devices("CPU")][:num_devices]
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)
        tf.config.threading.set_intra_op_parallelism_threads(threads_per_device)
        tf.config.threading.set_inter_op_parallelism_threads(
            concurrent_ops or num_devices)
    except RuntimeError as e:
        raise RuntimeError(
            f"Cannot split the CPU into {num_devices} devices: TensorFlow has "
            "already run an op in this process; split it first thing."
        ) from e
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def gpu_memory_mb(index=0):
    """Total memory of physical GPU `index` in MiB, from `nvidia-smi` (None
    when it cannot tell)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={index}", "--query-gpu=memory.total",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30, check=True).stdout
        return int(float(out.strip().splitlines()[0]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def split_gpu(num_devices, memory_limit_mb=None, share=0.9):
    """Splits the first GPU into `num_devices` logical GPUs; returns their names.

    So that placement, pipelining and several Ray stages can be checked on a
    machine with one GPU.  The logical GPUs share the chip: its compute, its
    memory bandwidth and one stream each, so what they show is that the
    blocks run where they are put and train as on one device, not how much
    faster several physical GPUs would be.

    Must run before TensorFlow initializes the GPU (before any op).  Returns
    the first `num_devices` logical GPUs if it is already split into that
    many.

    Args:
        num_devices: int >= 1, logical GPUs to make.
        memory_limit_mb: MiB of each (default: `share` of the GPU's memory,
            as `nvidia-smi` gives it, divided evenly).
        share: the fraction of the GPU's memory the logical GPUs take
            together when `memory_limit_mb` is not given.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise RuntimeError("split_gpu: TensorFlow sees no GPU.")
    current = tf.config.get_logical_device_configuration(gpus[0])
    if current is not None and len(current) >= num_devices:
        return [d.name for d in tf.config.list_logical_devices("GPU")][:num_devices]
    if memory_limit_mb is None:
        total = gpu_memory_mb(0)
        if total is None:
            raise RuntimeError(
                "split_gpu: cannot read the GPU's memory (no nvidia-smi); give "
                "memory_limit_mb, the MiB of each logical GPU.")
        memory_limit_mb = int(share * total / num_devices)
    try:
        tf.config.set_logical_device_configuration(
            gpus[0], [tf.config.LogicalDeviceConfiguration(
                memory_limit=int(memory_limit_mb))] * num_devices)
    except RuntimeError as e:
        raise RuntimeError(
            f"Cannot split the GPU into {num_devices} devices: TensorFlow has "
            "already initialized it; split it first thing.") from e
    return [d.name for d in tf.config.list_logical_devices("GPU")][:num_devices]


def make_strategy(kind, num_devices=0, placement="auto", pipeline=True, ray_options=None,
                  jit_compile="auto"):
    """The strategy of `config.distribute`; call it before any TF op.

    Args:
        kind: `"none"`, `"blocks"`, `"ray"`, `"mirrored"` or `"multi_worker"`.
        num_devices: devices to use (0: every GPU; without a GPU, the CPU
            split into one logical device per core; more than the one GPU
            of a machine: that GPU split into logical GPUs, `split_gpu`).
        placement: `"auto"` or a list of device indices, for `"blocks"`.
        pipeline: bool, for `"blocks"`.
        jit_compile: for `"blocks"`: each block's step compiled with XLA
            for its device (True, False, or `"auto"`: on GPUs, not on CPU
            devices).
        ray_options: for `"ray"`, keyword arguments of `RayPipeline`.

    Returns:
        A `BlockParallel`, a `RayPipeline`, a `tf.distribute.Strategy`, or
        None for `"none"`.
    """
    if kind == "none":
        return None
    if kind == "ray":
        return RayPipeline(placement=placement, **(ray_options or {}))
    if kind == "blocks" and keras.backend.backend() == "jax":
        return _jax_block_parallel(num_devices, placement, pipeline)
    if kind == "blocks":
        check_backend("BlockParallel")
    elif kind in _TF_DISTRIBUTE:
        _check_tf_distribute(kind)
    else:
        raise ValueError(f"Unknown distribute {kind!r}.")
    import tensorflow as tf

    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "distribute=multi_worker needs the TF_CONFIG environment "
                "variable (cluster and task of this worker); see "
                "docs/several-devices.md, 'Several hosts'."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")  # (Listing logical devices
    if len(gpus) == 1 and num_devices > 1:  # would initialize them, and no
        devices = split_gpu(num_devices)  # device could be split.)
    elif gpus:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    else:
        devices = split_cpu(num_devices or os.cpu_count() or 1)
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(
                f"num_devices={num_devices} but only {len(devices)} devices "
                f"are visible ({devices})."
            )
        devices = devices[:num_devices]
    if kind == "blocks":
        return BlockParallel(devices, placement=placement, pipeline=pipeline,
                             jit_compile=jit_compile)
    if kind == "mirrored":
        if all("CPU" in d for d in devices):
            # One memory: reduce on one device rather than with collective
            # ops, whose keys clash between strategies made in one process.
            return tf.distribute.MirroredStrategy(
                devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
        return tf.distribute.MirroredStrategy(devices)
    raise ValueError(f"Unknown distribute {kind!r}.")


def _jax_block_parallel(num_devices, placement, pipeline):
    """`BlockParallel` over JAX's first `num_devices` devices (default all;
    on a CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=N` before
    JAX starts gives N)."""
    from al_keras.distribute import jax_pipeline

    devices = jax_pipeline.default_devices()
    if num_devices > len(devices):
        raise ValueError(
            f"num_devices={num_devices} but JAX sees {len(devices)} devices "
            f"({[jax_pipeline.device_name(d) for d in devices]}); on a CPU set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={num_devices} "
            "before JAX starts.")
    return BlockParallel(devices[:num_devices or len(devices)], placement=placement,
                         pipeline=pipeline)


def strategy_scope(strategy):
    """`strategy.scope()`, or a no-op context for None."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def replicas_in_sync():
    """Number of replicas whose gradients are summed (1 without a strategy)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync
