"""Learning-rate schedules: the original code's, and one scaled by a factor."""

import keras


@keras.saving.register_keras_serializable(package="al_keras")
class OriginalSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Kao & Chen's step schedule: x0.1 at 40, 60 and 80% of training, x0.5 at 90%.

    The factors compound: from `initial_learning_rate` to 1e-1, 1e-2, 1e-3
    and finally 5e-4 times it (in the original CIFAR code: at steps 125,000,
    187,500, 250,000 and 281,250 of 312,500).

    Args:
        initial_learning_rate: float.
        total_steps: int, the number of training steps of the whole run.
    """

    def __init__(self, initial_learning_rate, total_steps):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        progress = keras.ops.cast(step, "float32") / float(self.total_steps)
        factor = keras.ops.ones_like(progress)
        for boundary in (0.4, 0.6, 0.8):
            factor = keras.ops.where(progress >= boundary, factor * 0.1, factor)
        factor = keras.ops.where(progress >= 0.9, factor * 0.5, factor)
        return self.initial_learning_rate * factor

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "total_steps": self.total_steps,
        }


@keras.saving.register_keras_serializable(package="al_keras")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule multiplied by a constant `factor`.

    Used for the auto-encoder optimizers when `compile()` is given a
    schedule: they follow it at `ae_lr_multiplier` times its value.

    Args:
        schedule: a `LearningRateSchedule` (or its serialized config).
        factor: float multiplier.
    """

    def __init__(self, schedule, factor):
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        self.schedule = schedule
        self.factor = float(factor)

    def __call__(self, step):
        return self.schedule(step) * self.factor

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "factor": self.factor,
        }
