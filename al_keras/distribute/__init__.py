"""Training an `ALModel` on several devices.

* `BlockParallel` (`block_parallel.py`) -- model parallelism, AL's own: each
  block on its own device, pipelined in one compiled step (`pipeline.py`),
  placed by measured block costs (`partition.py`), its speedup predicted by
  measuring how the devices overlap (`measure_overlap`).
* `make_strategy`, `split_cpu`, `split_gpu` (`strategies.py`) -- the strategy of
  `config.distribute`, including `tf.distribute` data parallelism
  (`MirroredStrategy`, `MultiWorkerMirroredStrategy`).
* `pipeline_simulator` -- the analytic timing model of AL and BP schedules.

See docs/several-devices.md.
"""

from al_keras.distribute import pipeline_simulator
from al_keras.distribute.block_parallel import (
    BlockParallel,
    OverlapProfile,
    current_block_parallel,
    default_devices,
    measure_block_costs,
    measure_overlap,
)
from al_keras.distribute.ray_pipeline import RayPipeline, StageFailedError
from al_keras.distribute.strategies import (
    make_strategy,
    replicas_in_sync,
    split_cpu,
    split_gpu,
    strategy_scope,
)

__all__ = [
    "BlockParallel",
    "OverlapProfile",
    "RayPipeline",
    "StageFailedError",
    "current_block_parallel",
    "default_devices",
    "make_strategy",
    "measure_block_costs",
    "measure_overlap",
    "pipeline_simulator",
    "replicas_in_sync",
    "split_cpu",
    "split_gpu",
    "strategy_scope",
]
