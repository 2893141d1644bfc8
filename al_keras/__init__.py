"""al_keras: Associated Learning for Keras 3 / TensorFlow.

Train deep networks without end-to-end backpropagation (Kao & Chen,
"Associated Learning: Decomposing End-to-end Backpropagation based on
Auto-encoders and Target Propagation", Neural Computation 33(1), 2021).
"""

__version__ = "0.1.0"

from al_keras import backbones
from al_keras import data
from al_keras import distribute
from al_keras import models
from al_keras import pipeline_simulator
from al_keras.al_model import ALModel
from al_keras.backbones import ResidualUnit
from al_keras.bp_model import BPModel
from al_keras.input_checks import InputDataError
from al_keras.labels import ClassificationCrossentropy
from al_keras.layers import (AssociatedBlock, Bridge, FeaturePooling, LabelDecoder,
                             LabelEncoder)
from al_keras.models import associate, bp_twin
from al_keras.nonfinite import NonFiniteLossError
from al_keras.optimizers import ScaledSchedule

__all__ = [
    "ALModel",
    "AssociatedBlock",
    "BPModel",
    "Bridge",
    "FeaturePooling",
    "ClassificationCrossentropy",
    "InputDataError",
    "LabelDecoder",
    "LabelEncoder",
    "NonFiniteLossError",
    "ResidualUnit",
    "ScaledSchedule",
    "associate",
    "backbones",
    "bp_twin",
    "data",
    "distribute",
    "models",
    "pipeline_simulator",
]
