"""SavedModel export with one named signature per inference path."""

import dataclasses
import os
import shutil

import keras
import tensorflow as tf


@dataclasses.dataclass
class Endpoint:
    """A signature whose function returns its own dict of outputs.

    Attributes:
        fn: `fn(inputs, *extra)` returning a dict of tensors.
        extra_inputs: `tf.TensorSpec`s of the inputs after the model's.
    """

    fn: object
    extra_inputs: list = dataclasses.field(default_factory=list)


def export_saved_model(model, filepath, endpoints, input_signature=None,
                       overwrite=False, verbose=None):
    """Writes `model` as a SavedModel whose signatures are `endpoints`.

    Args:
        model: a built Keras model.
        filepath: directory to write.
        endpoints: dict name -> function of one input batch returning class
            probabilities (served as `{"probabilities": ...}`), or an
            `Endpoint` (its own outputs and more inputs).  The first one is
            also `serving_default`.
        input_signature: optional `tf.TensorSpec` of the input; default: the
            model's built input shape with a free batch size, float32 (int32
            token ids for a text model), named `inputs`; for a model with a
            `TextVectorization` preprocessor, strings `(batch,)` named `text`.
        overwrite: replace an existing `filepath`; otherwise an existing one
            raises `FileExistsError`.
        verbose: print the endpoints written.

    A model with a preprocessor gets each endpoint on raw inputs (the
    preprocessor first) and one more signature, `token_ids`: the first
    endpoint on the model's own inputs (e.g. for TFLite, which cannot run
    string ops without the Flex delegate).

    The SavedModel is written next to `filepath` and moved there when
    complete, so an interrupted export leaves no partial `filepath` (and,
    with `overwrite=True`, the old export until the new one is whole).
    """
    filepath = os.path.normpath(os.fspath(filepath))
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(
            f"Export directory {filepath!r} already exists; pass "
            "overwrite=True to replace it, or choose another path."
        )
    preprocessor = getattr(model, "preprocessor", None)
    if input_signature is None:
        input_signature = (preprocessor_spec(preprocessor) if preprocessor is not None
                           else input_spec(model))
    if isinstance(input_signature, (list, tuple)):
        (input_signature,) = input_signature
    endpoints = {name: fn if isinstance(fn, Endpoint) else Endpoint(_named_output(fn))
                 for name, fn in endpoints.items()}
    first = next(iter(endpoints.values()))
    if preprocessor is not None:  # Raw inputs in: the preprocessor runs first.
        endpoints = {name: dataclasses.replace(
            endpoint, fn=_after(preprocessor, endpoint.fn, len(endpoint.extra_inputs)))
            for name, endpoint in endpoints.items()}
    archive = keras.export.ExportArchive()
    archive.track(model)
    if preprocessor is not None:
        archive.track(preprocessor)  # Its lookup tables.
    for name, endpoint in endpoints.items():
        archive.add_endpoint(name, endpoint.fn,
                             input_signature=[input_signature, *endpoint.extra_inputs])
    if preprocessor is not None:
        archive.add_endpoint("token_ids", first.fn, input_signature=[input_spec(model)])
    partial = f"{filepath}.partial-{os.getpid()}"
    if os.path.exists(partial):  # Left by an interrupted export with our pid.
        shutil.rmtree(partial)
    archive.write_out(partial, verbose=bool(verbose))
    if os.path.exists(filepath):
        old = f"{filepath}.old-{os.getpid()}"
        os.replace(filepath, old)
        os.replace(partial, filepath)
        shutil.rmtree(old)
    else:
        os.replace(partial, filepath)


def _after(preprocessor, fn, extra_inputs):
    """`fn` on the preprocessor's output, with the same number of inputs
    (a traced signature takes no `*args` or keyword defaults)."""
    if extra_inputs == 0:
        return lambda raw: fn(preprocessor(raw))
    if extra_inputs == 1:
        return lambda raw, extra: fn(preprocessor(raw), extra)
    raise ValueError(f"An endpoint takes at most 1 input besides the model's, got "
                     f"{extra_inputs}.")


def _named_output(fn):
    def serve(inputs):
        return {"probabilities": tf.cast(fn(inputs), tf.float32)}

    return serve


def preprocessor_spec(preprocessor):
    """`tf.TensorSpec` of a preprocessor's raw input: strings `(batch,)` named
    `text` for a `TextVectorization`."""
    if isinstance(preprocessor, keras.layers.TextVectorization):
        return tf.TensorSpec((None,), tf.string, name="text")
    raise ValueError(
        f"Exporting a model with a {type(preprocessor).__name__} preprocessor needs "
        "input_signature=tf.TensorSpec(...) of its raw input.")


def input_spec(model):
    """`tf.TensorSpec` of the model's input, from the shape it was built on."""
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    shape = next(iter(shapes.values()), None)
    if shape is None:
        raise ValueError(
            "Build the model (call it on data, fit it, or model.build(shape)) "
            "before exporting, or pass input_signature."
        )
    dtype = tf.int32 if getattr(model, "vocabulary_size", None) else tf.float32
    return tf.TensorSpec((None,) + tuple(shape)[1:], dtype, name="inputs")
