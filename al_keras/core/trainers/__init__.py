"""ALModel's trainer for the Keras backend in use, as Keras has one per backend.

* `tensorflow.py` -- one `tf.GradientTape` per local loss, `tf.function` /
  XLA train functions over `tf.data` iterators.
* `jax.py` -- a stateless step: `jax.value_and_grad` of each local loss over
  the block's variable values, each block optimizer's `stateless_apply`,
  the whole step jitted, the state threaded as Keras' JAX trainer threads it.

Both run the same block step (`al_keras/core/step.py`), apply the same
`on_nonfinite_loss`, decode the same metrics through `h_i`, and train
exactly an epoch's steps for any `steps_per_execution`
(`al_keras/core/epoch_steps.py`).
"""

import keras

if keras.backend.backend() == "tensorflow":
    from al_keras.core.trainers.tensorflow import TensorFlowTrainer as Trainer
elif keras.backend.backend() == "jax":
    from al_keras.core.trainers.jax import JaxTrainer as Trainer
else:
    raise ImportError(
        f"al_keras trains on the TensorFlow and JAX backends of Keras; "
        f"KERAS_BACKEND is {keras.backend.backend()!r}. Set KERAS_BACKEND=jax "
        "or KERAS_BACKEND=tensorflow.")

__all__ = ["Trainer"]
