"""The model zoo: the original paper's networks as AL models and BP twins.

`al_keras.models.get(name, input_shape=..., num_classes=..., method="al" |
"bp", **options)` builds one (`zoo.py`); the encoders, cut into blocks, are
in `backbones.py`.  `associate` makes an `ALModel` of your own layers,
`bp_twin` the backprop twin of an `ALModel`.
"""

from al_keras.models import backbones, text_backbones
from al_keras.models.zoo import (
    METHODS,
    all_option_names,
    associate,
    bp_twin,
    check_options,
    get,
    names,
)

__all__ = [
    "METHODS",
    "all_option_names",
    "associate",
    "backbones",
    "text_backbones",
    "bp_twin",
    "check_options",
    "get",
    "names",
]
