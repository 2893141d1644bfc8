"""Choosing a strategy: `make_strategy` for `config.distribute`, `split_cpu`.

* `"blocks"` -- `BlockParallel` (model parallelism, one block per device).
* `"mirrored"` / `"multi_worker"` -- `tf.distribute.MirroredStrategy` /
  `MultiWorkerMirroredStrategy`: **data parallelism**; every replica holds
  the whole model and each block's gradients are all-reduced.  `ALModel`
  works under them as any Keras model does (`with strategy.scope(): model =
  ...; model.compile(...)`); several hosts are configured by `TF_CONFIG`
  (docs/several-devices.md).
"""

import contextlib
import os

import tensorflow as tf

from al_keras.distribute.block_parallel import BlockParallel
from al_keras.distribute.ray_pipeline import RayPipeline


def split_cpu(num_devices, threads_per_device=1, concurrent_ops=None):
    """Splits the CPU into `num_devices` logical devices; returns their names.

    Must run before TensorFlow runs any op.  Sets TensorFlow's thread pools
    to `threads_per_device` threads per op and `concurrent_ops` (default
    `num_devices`) ops at a time, so that the devices work at the same time
    (on a CPU they share one pool).  Returns the first `num_devices` if the
    CPU is already split into at least that many.
    """
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


def make_strategy(kind, num_devices=0, placement="auto", pipeline=True, ray_options=None,
                  jit_compile=True):
    """The strategy of `config.distribute`; call it before any TF op.

    Args:
        kind: `"none"`, `"blocks"`, `"ray"`, `"mirrored"` or `"multi_worker"`.
        num_devices: devices to use (0: every GPU; without a GPU, the CPU
            split into one logical device per core).
        placement: `"auto"` or a list of device indices, for `"blocks"`.
        pipeline: bool, for `"blocks"`.
        jit_compile: bool, for `"blocks"`: each block's step compiled with
            XLA for its device.
        ray_options: for `"ray"`, keyword arguments of `RayPipeline`.

    Returns:
        A `BlockParallel`, a `RayPipeline`, a `tf.distribute.Strategy`, or
        None for `"none"`.
    """
    if kind == "none":
        return None
    if kind == "ray":
        return RayPipeline(placement=placement, **(ray_options or {}))
    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "distribute=multi_worker needs the TF_CONFIG environment "
                "variable (cluster and task of this worker); see "
                "docs/several-devices.md, 'Several hosts'."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_physical_devices("GPU"):  # (Listing logical devices
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    else:  # would initialize them, and the CPU could not be split.)
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


def strategy_scope(strategy):
    """`strategy.scope()`, or a no-op context for None."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def replicas_in_sync():
    """Number of replicas whose gradients are summed (1 without a strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync
