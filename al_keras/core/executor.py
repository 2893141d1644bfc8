"""The seam between an `ALModel` and whatever runs its training step.

As Keras' trainers know nothing of distribution (the distribution wraps
the train function), `ALModel` knows nothing of devices, pipelines or Ray:
a model made inside an executor's scope (`al_keras.distribute.BlockParallel`,
`RayPipeline`) keeps that executor, and asks it, at the few points where it
matters, where block i lives (`device`), how to build and compile, and for
the train function.  Without an executor the model runs its own plain,
sequential `train_step`.  This module defines the questions; `distribute`
answers them.
"""

import contextlib
import threading

_LOCAL = threading.local()


class Executor:
    """What an `ALModel` asks of the executor whose scope it was made in.

    Every hook has the plain answer here; an executor overrides the ones it
    changes.  Hooks take the model, so that one executor may serve several
    models (its per-model state lives in the executor, not the model).
    """

    def device(self, model, index):
        """The context in which block `index`'s variables and ops live."""
        return contextlib.nullcontext()

    def hand_to_block(self, model, index, x):
        """`x` (an input of block `index` in an eager call) where that block
        can take it."""
        return x

    def build(self, model, input_shape):
        """Called before the model's blocks are built (e.g. to place them)."""

    def compile(self, model, kwargs):
        """`compile`'s keyword arguments, as this executor needs them."""
        return kwargs

    def compiled(self, model):
        """Called after `compile` (e.g. to forget traced functions)."""

    def make_train_function(self, model):
        """The model's train function, or None for the model's own."""
        return None

    def inference_function(self, model, function):
        """The model's test or predict function (JAX: `function(state,
        iterator)`), as this executor runs it."""
        return function

    def fit_callbacks(self, model):
        """Callbacks `fit` runs first (e.g. a pipeline's drain at epoch end)."""
        return []


@contextlib.contextmanager
def scope(executor):
    """Models made inside the `with` block get `executor`."""
    stack = _stack()
    stack.append(executor)
    try:
        yield executor
    finally:
        stack.pop()


def current():
    """The executor of the innermost `scope`, or None."""
    stack = _stack()
    return stack[-1] if stack else None


def _stack():
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack
