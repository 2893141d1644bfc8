"""Cloning the user's optimizer into AL's per-block, per-loss optimizers."""

import keras

from al_keras.core.schedules import ScaledSchedule


def clone_optimizer(optimizer, lr_factor=1.0, name=None):
    """A fresh, unbuilt optimizer configured like `optimizer`.

    Its learning rate is `lr_factor` times `optimizer`'s (its current value
    if a float, or the same schedule scaled by `lr_factor`).  A
    `LossScaleOptimizer` is cloned with a clone of its inner optimizer, so
    each block keeps its own loss scale.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        inner = clone_optimizer(optimizer.inner_optimizer, lr_factor, name)
        config = optimizer.get_config()
        return keras.optimizers.LossScaleOptimizer(
            inner,
            initial_scale=config["initial_scale"],
            dynamic_growth_steps=config["dynamic_growth_steps"],
            name=f"{name}_loss_scale" if name else None,
        )
    config = optimizer.get_config()
    if name is not None:
        config["name"] = name
    learning_rate = config["learning_rate"]
    if lr_factor != 1.0:
        if isinstance(learning_rate, dict):
            config["learning_rate"] = ScaledSchedule(learning_rate, lr_factor)
        else:
            config["learning_rate"] = float(learning_rate) * lr_factor
    return optimizer.__class__.from_config(config)
