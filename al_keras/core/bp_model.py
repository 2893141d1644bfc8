"""`BPModel`: the backprop twin of an AL model, for side-by-side comparison."""

import keras

from al_keras.core import epoch_steps, input_checks, keras_compat, nonfinite
from al_keras.core import sequence as sequence_lib
from al_keras.core.labels import ClassificationCrossentropy, check_num_classes
from al_keras.core.layers import FeaturePooling


@keras.saving.register_keras_serializable(package="al_keras")
class BPModel(epoch_steps.ExactEpochStepsMixin, input_checks.CheckedDataMixin,
              keras.Model):
    """The same backbone as an AL model, trained end to end by backprop.

    The head mirrors the AL model's inference path, as the original code's
    BP baselines did: (FeaturePooling if `bridge_pool_size`) -> Flatten ->
    Dense(`bridge_multiplier * n_L`) -> Dense(`n_L`) (the bridge `b_L`), one
    Dense per decoder `h_L ... h_2` (`n_{L-1} ... n_1`), and a softmax Dense
    to the classes (`h_1`).  So the two models have the same parameters at
    inference and differ only in how they are trained.

    `compile()` defaults the loss to cross-entropy that accepts class ids or
    one-hot labels, like `ALModel`; `fit`, `evaluate`, `predict` and `export`
    are Keras'.

    Args:
        encoders: list of Keras layers, the backbone `f_1 ... f_L`.
        num_classes: int >= 2.
        label_units: int or list of ints (one per block), the AL model's `n_i`
            that the head mirrors.
        bridge_multiplier: hidden width of the first head layer, in units of
            `n_L` (0 drops it).
        bridge_pool_size: 0, or k > 0 to average-pool a convolutional
            feature map to k x k before the head, as a light bridge of
            the AL model does (see `al_keras.FeaturePooling`).
        head_activation: activation of the head's hidden layers (`"relu"`,
            as the original BP baselines).
        sequence_pooling: None, or `"mean"` / `"last"` for a text model
            (encoders handing on masked sequences, see
            `al_keras.MaskedSequence`): the head first pools the last
            encoder's sequence over its tokens, as the AL model's bridge.
        preprocessor: optional Keras layer from raw inputs to the model's
            inputs (see `ALModel`), saved with the model; `export()` serves
            raw inputs through it.
        kernel_initializer: of the head, default `"he_normal"`.
        kernel_regularizer: optional regularizer of the head.
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: input batch.
        training: bool.

    Example:

    >>> model = al_keras.models.get("mlp", input_shape=(64,), num_classes=10,
    ...                             method="bp")
    >>> model.compile(optimizer="adam", metrics=["accuracy"])

    Reference:
        Kao & Chen, Associated Learning, Neural Computation 33(1), 2021.
    """

    def __init__(
        self,
        encoders,
        num_classes,
        label_units=256,
        bridge_multiplier=5,
        head_activation="relu",
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        bridge_pool_size=0,
        sequence_pooling=None,
        preprocessor=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._preprocessor = keras_compat.Untracked(
            sequence_lib.check_preprocessor(preprocessor))
        self.sequence_pooling = sequence_pooling
        encoders = [
            keras.saving.deserialize_keras_object(e) if isinstance(e, dict) else e
            for e in encoders
        ]
        if not encoders:
            raise ValueError("A BPModel needs at least one encoder.")
        check_num_classes(num_classes)
        if isinstance(label_units, int):
            label_units = [label_units] * len(encoders)
        label_units = list(label_units)
        if len(label_units) != len(encoders):
            raise ValueError(
                f"label_units has {len(label_units)} entries for "
                f"{len(encoders)} encoders."
            )
        self.encoders = encoders
        self.num_classes = num_classes
        self.label_units = label_units
        self.bridge_multiplier = bridge_multiplier
        self.bridge_pool_size = bridge_pool_size
        self.head_activation = head_activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

        widths = []
        hidden = int(round(bridge_multiplier * label_units[-1]))
        if hidden > 0:
            widths.append(hidden)
        widths += label_units[::-1]
        dense = dict(
            activation=head_activation,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
        )
        self.head = [sequence_lib.SequencePooling(
            sequence_pooling, name="head_sequence_pool")] if sequence_pooling else []
        if bridge_pool_size:
            self.head.append(FeaturePooling(bridge_pool_size, name="head_pool"))
        self.head.append(keras.layers.Flatten(name="head_flatten"))
        self.head += [
            keras.layers.Dense(w, name=f"head_dense_{i}", **dense)
            for i, w in enumerate(widths, start=1)
        ]
        self.head.append(
            keras.layers.Dense(
                num_classes,
                activation="softmax",
                kernel_initializer=self.kernel_initializer,
                kernel_regularizer=self.kernel_regularizer,
                name="head_output",
                dtype="float32",
            )
        )

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.encoders + self.head:
            x = layer(x, training=training)
        return x

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.encoders + self.head:
            if not layer.built:
                layer.build(shape)
            shape = tuple(
                layer.compute_output_spec(keras.KerasTensor(shape)).shape
            )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def compile(self, optimizer="adam", loss=None, metrics=None,
                on_nonfinite_loss="stop", **kwargs):
        """`keras.Model.compile`; `loss` defaults to cross-entropy on ids or one-hot.

        `on_nonfinite_loss="stop"` (the only mode of the BP twin) makes `fit`
        raise `al_keras.NonFiniteLossError` at the first NaN / Inf loss.
        """
        if on_nonfinite_loss != "stop":
            raise ValueError(
                f"BPModel supports on_nonfinite_loss='stop' only, got "
                f"{on_nonfinite_loss!r} ('skip' skips one block's update in an "
                "ALModel).")
        if loss is None:
            loss = ClassificationCrossentropy(self.num_classes)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`; a non-finite loss stops it (see `compile`)."""
        callbacks = [nonfinite.StopOnNonFiniteLoss(), *(callbacks or [])]
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))

    def export(self, filepath, format="tf_saved_model", verbose=None,
               input_signature=None, overwrite=False, **kwargs):
        """Writes a SavedModel (`serving_default` -> `{"probabilities"}`)."""
        from al_keras.core import export as export_lib  # It needs TensorFlow.

        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose,
                                  input_signature=input_signature, **kwargs)
        export_lib.export_saved_model(
            self, filepath, {"serve": lambda x: self(x, training=False)},
            input_signature=input_signature, overwrite=overwrite,
            verbose=verbose,
        )

    @property
    def preprocessor(self):
        """The layer from raw inputs to the model's inputs, or None."""
        return self._preprocessor.value

    @property
    def vocabulary_size(self):
        """The number of token ids the first encoder embeds (None: not text)."""
        return sequence_lib.vocabulary_size(self.encoders[0])

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "encoders": [
                keras.saving.serialize_keras_object(e) for e in self.encoders
            ],
            "num_classes": self.num_classes,
            "label_units": list(self.label_units),
            "bridge_multiplier": self.bridge_multiplier,
            "bridge_pool_size": self.bridge_pool_size,
            "head_activation": self.head_activation,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
        }
        if self.sequence_pooling is not None:
            config["sequence_pooling"] = self.sequence_pooling
        if self.preprocessor is not None:
            config["preprocessor"] = keras.saving.serialize_keras_object(
                self.preprocessor)
        return config
