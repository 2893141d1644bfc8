"""ALModel's trainer on JAX: a stateless, jitted AL step.

The state Keras' JAX trainer threads through a jitted step -- trainable,
non-trainable, optimizer and metric variable values -- is threaded here
too, its optimizer slot holding `model.optimizer`'s values followed by
every block optimizer's (`assoc_optimizers`, then `ae_optimizers`).  For
block i the step takes `jax.value_and_grad` of each local loss
(`al_keras/core/step.py`, under a `keras.StatelessScope` that maps the
block's variables to the values of the step) over the values of the part
it trains only, and applies the gradients with that block optimizer's
`stateless_apply`.  Nothing else can reach a block's variables: no gradient
crosses a block boundary by construction, as with TensorFlow's tapes.
The block's step alone, on its own values, is `stateless_train_block`: what
`BlockParallel` jits for the block's device (`distribute/jax_pipeline.py`).
"""

import contextlib

import jax
import keras
from keras import ops

from al_keras.core import keras_compat, nonfinite


class JaxTrainer:
    """`ALModel`'s training step and train function on JAX."""

    def _eager_scope(self):
        return contextlib.nullcontext()

    def _symbolic_build(self, iterator=None, data_batch=None):
        # Keras' JAX fit builds an unbuilt model symbolically, inside a
        # stateless scope, where no optimizer may create its variables
        # (`ALModel._build_optimizers` defers them): they are built now.
        result = super()._symbolic_build(iterator=iterator, data_batch=data_batch)
        if self.__dict__.pop("_optimizers_pending", False):
            self._build_optimizers()
        return result

    def _block_scope(self, index):
        return self.block_device(index)

    # ------------------------------------------------------------ the state
    def _block_optimizers(self):
        return list(self.assoc_optimizers) + list(self.ae_optimizers)

    def state_optimizer_variables(self):
        """`model.optimizer`'s variables, then every block optimizer's: the
        optimizer slot of Keras' JAX state tuple."""
        variables = list(self.optimizer.variables)
        for optimizer in self._block_optimizers():
            variables += list(optimizer.variables)
        return variables

    def _get_jax_state(self, trainable_variables=False, non_trainable_variables=False,
                       optimizer_variables=False, metrics_variables=False,
                       purge_model_variables=False):
        # Keras' state, with the block optimizers' values in its optimizer
        # slot (Keras knows only `model.optimizer`; theirs are not purged).
        state = list(super()._get_jax_state(
            trainable_variables=trainable_variables,
            non_trainable_variables=non_trainable_variables,
            optimizer_variables=optimizer_variables,
            metrics_variables=metrics_variables,
            purge_model_variables=purge_model_variables))
        if optimizer_variables:
            slot = int(bool(trainable_variables)) + int(bool(non_trainable_variables))
            state[slot] = list(state[slot]) + [
                v.value for o in self._block_optimizers() for v in o.variables]
        return tuple(state)

    def jax_state_sync(self):
        state = getattr(self, "_jax_state", None)
        if state and not self._jax_state_synced and state.get("optimizer_variables"):
            values = state["optimizer_variables"]
            for variable, value in zip(self.state_optimizer_variables(), values):
                variable.assign(value)
        return super().jax_state_sync()

    # ------------------------------------------------------------- the step
    def train_step(self, state, data):
        trainable, non_trainable, optimizer_values, metrics_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        values = _Values(self)
        values.set(self.trainable_variables, trainable)
        values.set(self.non_trainable_variables, non_trainable)
        values.set(self.state_optimizer_variables(), optimizer_values)
        values.set(self.metrics_variables, metrics_values)
        start = values.copy()  # The metrics decode with the step's first h_i.
        self._follow_learning_rate(values)

        t_prev = self.targets(y)
        s, assoc_losses, ae_losses, applied = x, [], [], []
        for index in range(self.num_blocks):
            with self._block_scope(index):
                s, t, prediction, assoc_loss, ae_loss, block_applied = (
                    self._train_block(values, index, s, t_prev, sample_weight))
            t_prev = t
            assoc_losses.append(assoc_loss)
            ae_losses.append(ae_loss)
            applied.append(block_applied)

        iterations = self.optimizer.iterations
        values.update(iterations, values.get(iterations) + 1)
        with keras.StatelessScope(state_mapping=start.mapping(
                self.trainable_variables + self.non_trainable_variables
                + self.metrics_variables)) as scope:
            y_pred = self.decode(prediction, self.num_blocks)
            self.record_losses(assoc_losses, ae_losses, applied=(
                applied if self.on_nonfinite_loss == "skip" else None))
            logs = self.compute_metrics(x, y, y_pred, sample_weight)
        values.set(self.metrics_variables,
                   [scope.get_current_value(v) for v in self.metrics_variables])
        return logs, (values.of(self.trainable_variables),
                      values.of(self.non_trainable_variables),
                      values.of(self.state_optimizer_variables()),
                      values.of(self.metrics_variables))

    def _train_block(self, values, index, s_prev, t_prev, sample_weight):
        """Block `index`'s whole local step on `values` (updated in place):
        both losses, both updates.  Returns `(s_i, t_i, b_i(s_i),
        assoc_loss, ae_loss, applied)`, as the TensorFlow `train_block`."""
        block = self.blocks[index]
        scope = self.block_variables(index)
        t, ae_loss, ae_applied = self._local_update(
            values, self.ae_optimizers[index], block.label_side_variables,
            lambda: self._label_side(index, t_prev, sample_weight, True),
            "auto-encoder", index, scope, block.non_trainable_variables)
        (s, prediction), assoc_loss, assoc_applied = self._local_update(
            values, self.assoc_optimizers[index], block.input_side_variables,
            lambda: self._input_side(index, s_prev, t, sample_weight, True),
            "associated", index, scope, block.non_trainable_variables)
        return (s, t, prediction, assoc_loss, ae_loss,
                ops.stack([assoc_applied, ae_applied]))

    def block_variables(self, index):
        """Every variable block `index`'s local step reads or writes, in a
        fixed order: its label side (g_i, h_i), its input side (f_i, b_i),
        its non-trainable variables, its auto-encoder and its associated
        optimizer's variables.  `stateless_train_block` takes their values."""
        block = self.blocks[index]
        return (list(block.label_side_variables) + list(block.input_side_variables)
                + list(block.non_trainable_variables)
                + list(self.ae_optimizers[index].variables)
                + list(self.assoc_optimizers[index].variables))

    def stateless_train_block(self, index, block_values, s_prev, t_prev,
                              sample_weight=None, learning_rate=None):
        """Block `index`'s local step as a pure function, for an executor
        to jit and run on the block's device (no other block's value is
        read).

        Args:
            block_values: the values of `block_variables(index)`.
            s_prev, t_prev: the block's inputs (`x` and `targets(y)` for the
                first block).
            learning_rate: `model.optimizer`'s float learning rate, which
                the block's optimizers follow (None: a schedule, or keep).

        Returns:
            `(new block_values, (s_i, t_i, b_i(s_i), assoc_loss, ae_loss,
            applied))`.
        """
        values = _Values(self)
        variables = self.block_variables(index)
        values.set(variables, block_values)
        if learning_rate is not None:
            self._set_block_rates(values, index, learning_rate)
        outputs = self._train_block(values, index, s_prev, t_prev, sample_weight)
        return values.of(variables), outputs

    def _local_update(self, values, optimizer, variables, local_part, family, index,
                      scope_variables, non_trainable):
        """One local loss: its value and gradients for `variables` (its part's
        values only), then `optimizer`'s stateless update of them.  The loss
        is computed in a scope of `scope_variables`' values (the block's),
        and the updated values of `non_trainable` (e.g. batch statistics)
        are kept.

        Returns `(outputs, loss, applied)`: `local_part()`'s outputs but the
        loss (one output alone, several as a tuple), the loss, and whether the
        update was made (with `on_nonfinite_loss="skip"` a non-finite loss
        or gradient leaves the part and its optimizer as they were).
        """

        def loss_of(part):
            trial = values.copy()
            trial.set(variables, part)
            with keras.StatelessScope(
                    state_mapping=trial.mapping(scope_variables)) as scope:
                outputs = local_part()
                scaled = optimizer.scale_loss(outputs[-1])
            updates = [scope.get_current_value(v) for v in non_trainable]
            return scaled, (outputs, updates)

        part = values.of(variables)
        (_, (outputs, updates)), grads = jax.value_and_grad(loss_of, has_aux=True)(part)
        nonfinite.check_gradients(grads, variables, family, index)
        loss = outputs[-1]
        values.set(non_trainable, updates)  # E.g. batch statistics.
        old_state = values.of(optimizer.variables)
        new_part, new_state = optimizer.stateless_apply(old_state, grads, part)
        applied = ops.convert_to_tensor(True)
        if self.on_nonfinite_loss == "skip":
            applied = nonfinite.all_finite(loss, grads)
            new_part = [ops.where(applied, n, o) for n, o in zip(new_part, part)]
            new_state = [ops.where(applied, n, o) for n, o in zip(new_state, old_state)]
        values.set(variables, new_part)
        values.set(optimizer.variables, new_state)
        outputs = outputs[:-1]
        return (outputs[0] if len(outputs) == 1 else outputs), loss, applied

    def _follow_learning_rate(self, values):
        """Block optimizers follow a float learning rate of `model.optimizer`
        (a schedule is cloned into each block optimizer instead)."""
        variable = self.learning_rate_variable()
        if variable is not None:
            for index in range(self.num_blocks):
                self._set_block_rates(values, index, values.get(variable))

    def learning_rate_variable(self):
        """`model.optimizer`'s float learning rate, the variable the block
        optimizers follow; None for a schedule."""
        return _rate_variable(self.optimizer)

    def _set_block_rates(self, values, index, rate):
        for optimizer, factor in ((self.assoc_optimizers[index], 1.0),
                                  (self.ae_optimizers[index], self.ae_lr_multiplier)):
            own = _rate_variable(optimizer)
            if own is not None:
                values.update(own, ops.cast(rate * factor, own.dtype))

    def test_step(self, state, data):
        trainable, non_trainable, metrics_values = state
        variables = (self.trainable_variables + self.non_trainable_variables
                     + self.metrics_variables)
        with keras.StatelessScope(state_mapping=list(zip(
                variables, list(trainable) + list(non_trainable)
                + list(metrics_values)))) as scope:
            logs = self.evaluate_step(data)
        return logs, (trainable, _current(scope, self.non_trainable_variables),
                      _current(scope, self.metrics_variables))

    def predict_step(self, state, data):
        trainable, non_trainable = state
        with keras.StatelessScope(state_mapping=list(zip(
                self.trainable_variables + self.non_trainable_variables,
                list(trainable) + list(non_trainable)))) as scope:
            outputs = self.inference_step(data)
        return outputs, _current(scope, self.non_trainable_variables)

    def step_logs(self, logs):
        return logs

    def make_test_function(self, force=False):
        # Keras jits the bound method `self.test_step`, whose trace JAX
        # caches by (function, self): evaluate(exit=i) would reuse the trace
        # of another exit.  A function of its own per test function instead.
        if self.test_function is not None and not force:
            return self.test_function

        def test_step(state, data):
            return self.test_step(state, data)

        if not self.run_eagerly and self.jit_compile:
            test_step = jax.jit(test_step, donate_argnums=0)
        self.test_function = self._inference_function(
            keras_compat.looped_step_function(self, test_step))
        return self.test_function

    def make_predict_function(self, force=False):
        if self.predict_function is not None and not force:
            return self.predict_function
        super().make_predict_function(force=force)
        self.predict_function = self._inference_function(self.predict_function)
        return self.predict_function

    def _inference_function(self, function):
        # The executor's (e.g. blocks on several devices gathered on one).
        if self.executor is None:
            return function
        return self.executor.inference_function(self, function)


def _rate_variable(optimizer):
    """`optimizer`'s learning rate if it is a variable, else None (a
    schedule, which is read in a scope of step 0: the optimizer's own step
    count may have no value here, e.g. during Keras' JAX fit)."""
    iterations = optimizer.iterations
    with keras.StatelessScope(state_mapping=[(iterations, ops.zeros((), iterations.dtype))]):
        rate = optimizer.learning_rate
    return rate if isinstance(rate, keras.Variable) else None


def _current(scope, variables):
    return [scope.get_current_value(v) for v in variables]


class _Values:
    """The values of a step's variables, by variable (functional updates)."""

    def __init__(self, model, by_id=None):
        self._model = model
        self._by_id = dict(by_id or {})

    def copy(self):
        return _Values(self._model, self._by_id)

    def set(self, variables, values):
        values = list(values)
        if len(values) != len(variables):
            raise ValueError(f"{len(variables)} variables, {len(values)} values.")
        for variable, value in zip(variables, values):
            self._by_id[id(variable)] = value

    def update(self, variable, value):
        self._by_id[id(variable)] = value

    def get(self, variable):
        return self._by_id[id(variable)]

    def of(self, variables):
        return [self._by_id[id(v)] for v in variables]

    def mapping(self, variables):
        return [(v, self._by_id[id(v)]) for v in variables]


def train_function(model, train_step, jit=True):
    """Keras' JAX train function of `model` around `train_step(state, data)`
    (jitted unless `run_eagerly`, `jit_compile=False` or `jit=False`, for a
    step that dispatches jitted parts itself): a call runs the
    steps `fit`'s epoch has left of `steps_per_execution`
    (`epoch_steps`), each on a batch that was read; a call that reads none
    ends the epoch (StopIteration), changing nothing."""
    position = model._epoch_position()
    step = train_step
    if jit and not model.run_eagerly and model.jit_compile:
        step = jax.jit(train_step, donate_argnums=0)

    def function(state, iterator):
        logs = None
        for _ in range(position.steps or model.steps_per_execution):
            try:
                data = next(iterator)
            except StopIteration:
                break
            logs, state = step(state, data)
        if logs is None:
            raise StopIteration
        return logs, state

    return function
