"""Training an `ALModel` on several devices.

* `BlockParallel` (`block_parallel.py`) -- model parallelism, AL's own: each
  block on its own device, pipelined in one compiled step (`pipeline.py`),
  placed by measured block costs (`partition.py`), its speedup predicted by
  measuring how the devices overlap (`measure_overlap`).
* `make_strategy`, `split_cpu`, `split_gpu` (`strategies.py`) -- the strategy of
  `config.distribute`, including `tf.distribute` data parallelism
  (`MirroredStrategy`, `MultiWorkerMirroredStrategy`).
* `RayPipeline` (`ray_pipeline.py`, `ray_engine.py`, `ray_stage.py`) --
  pipeline stages as processes, on Ray.
* `pipeline_simulator` -- the analytic timing model of AL and BP schedules.

`BlockParallel` and `RayPipeline` are the `al_keras.core.executor.Executor`
of the models made in their `scope()`: the model asks them where its blocks
live and for its train function, and they use only its public methods
(`train_block`, `targets`, `record_losses`, `decode_through`, ...).  They
run on Keras' TensorFlow backend; the package imports without TensorFlow
(the TensorFlow-only modules, `pipeline.py` and `ray_engine.py`, load when
a step is first made).

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
