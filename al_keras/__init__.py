"""al_keras: Associated Learning for Keras 3, on TensorFlow and JAX.

Train deep networks without end-to-end backpropagation (Kao & Chen,
"Associated Learning: Decomposing End-to-end Backpropagation based on
Auto-encoders and Target Propagation", Neural Computation 33(1), 2021).

Where things live:

* `al_keras.core` -- the layers (the text models' sequence layers in
  `core/sequence.py`), `ALModel` (the block step in `core/step.py`, its
  trainer per Keras backend in `core/trainers/`, its exits in
  `core/exits.py`), `BPModel`;
  adaptive early exit and its calibration in `core/early_exit.py`
  (`al_keras.exits`);
* `al_keras.models` -- the model zoo (`get`, `associate`, `bp_twin`) and its
  backbones;
* `al_keras.distribute` -- blocks on devices (`BlockParallel`), the
  pipelined step, placement, the pipeline simulator, strategies;
* `al_keras.data` -- the embedded digits and the configs' datasets;
* `al_keras.training` -- what `train.py` runs: configs, the training loop,
  workdirs, reports, the quickstart.
"""

__version__ = "0.1.0"

import importlib

from al_keras import data, models
from al_keras.core import early_exit as exits
from al_keras.core.al_model import ALModel
from al_keras.core.block import AssociatedBlock
from al_keras.core.bp_model import BPModel
from al_keras.core.input_checks import InputDataError
from al_keras.core.labels import ClassificationCrossentropy
from al_keras.core.layers import Bridge, FeaturePooling, LabelDecoder, LabelEncoder
from al_keras.core.nonfinite import NonFiniteLossError
from al_keras.core.schedules import OriginalSchedule, ScaledSchedule
from al_keras.core.sequence import (
    MaskedSequence,
    SequencePooling,
    TokenAndPositionEmbedding,
    TransformerEncoder,
)
from al_keras.models import associate, backbones, bp_twin
from al_keras.models.backbones import ResidualUnit

__all__ = [
    "ALModel",
    "AssociatedBlock",
    "BPModel",
    "Bridge",
    "ClassificationCrossentropy",
    "FeaturePooling",
    "InputDataError",
    "LabelDecoder",
    "LabelEncoder",
    "MaskedSequence",
    "NonFiniteLossError",
    "OriginalSchedule",
    "ResidualUnit",
    "ScaledSchedule",
    "SequencePooling",
    "TokenAndPositionEmbedding",
    "TransformerEncoder",
    "associate",
    "backbones",
    "bp_twin",
    "data",
    "distribute",
    "exits",
    "models",
    "pipeline_simulator",
]


def __getattr__(name):
    # `al_keras.distribute` (and its `pipeline_simulator`) load when first
    # used: the core never needs them.
    if name == "distribute":
        return importlib.import_module("al_keras.distribute")
    if name == "pipeline_simulator":
        return importlib.import_module("al_keras.distribute.pipeline_simulator")
    raise AttributeError(f"module 'al_keras' has no attribute {name!r}")
