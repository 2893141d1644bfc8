"""SavedModel export with one named signature per inference path."""

import dataclasses
import os
import shutil
import tempfile

import keras

from al_keras.core import keras_compat

try:
    import tensorflow as tf
except ImportError as error:  # The JAX-only install.
    raise ImportError(
        "Exporting a SavedModel needs TensorFlow, which is not installed: "
        "pip install tensorflow (or al_keras[tensorflow]).") from error


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
        overwrite: replace an existing `filepath` (a folder or a file);
            otherwise an existing one raises `FileExistsError`.
        verbose: print the endpoints written.

    A model with a preprocessor gets each endpoint on raw inputs (the
    preprocessor first) and one more signature, `token_ids`: the first
    endpoint on the model's own inputs (e.g. for TFLite, which cannot run
    string ops without the Flex delegate).

    Each signature checks its inputs in the graph and refuses a bad one
    with an `InvalidArgumentError` saying what it takes (TFLite drops these
    checks): the model's input's shape (a signature checks dtypes only),
    finite features, token ids in `[0, vocabulary size)` (the `token_ids`
    signature, whose sequence length is the model's), an extra input's
    shape, and a `threshold` >= 0 (NaN refused; above 1: the full path).

    The SavedModel is written in a new folder next to `filepath` and moved
    there when complete: an export either completes, leaving nothing else,
    or fails (tracing, writing, moving, an interrupt) leaving what was
    there -- with `overwrite=True`, the old export (or file) until the new
    one is whole.  Missing parent folders are created.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "A SavedModel export (its signatures are TensorFlow graphs) runs on "
            f"Keras' TensorFlow backend; this process runs {keras.backend.backend()!r}. "
            "Save the model (model.save('m.keras')) and export it in a process "
            "with KERAS_BACKEND=tensorflow.")
    filepath = os.path.normpath(os.fspath(filepath))
    if os.path.lexists(filepath) and not overwrite:
        raise FileExistsError(
            f"Export directory {filepath!r} already exists; pass "
            "overwrite=True to replace it, or choose another path."
        )
    parent = os.path.dirname(os.path.abspath(filepath))
    above = parent
    while not os.path.exists(above):  # The first folder that exists above.
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise NotADirectoryError(f"Cannot export to {filepath!r}: {above!r} is a file, "
                                 "not a directory.")
    preprocessor = getattr(model, "preprocessor", None)
    if input_signature is None:
        input_signature = (preprocessor_spec(preprocessor) if preprocessor is not None
                           else input_spec(model))
    if isinstance(input_signature, (list, tuple)):
        (input_signature,) = input_signature
    endpoints = {name: fn if isinstance(fn, Endpoint) else Endpoint(_named_output(fn))
                 for name, fn in endpoints.items()}
    first = next(iter(endpoints.values()))
    vocabulary = getattr(model, "vocabulary_size", None)
    model_checks = [_no_checks if preprocessor is not None  # Its own, of strings.
                    else _input_checks(input_signature, vocabulary)]
    if preprocessor is not None:  # Raw inputs in: the preprocessor runs first.
        endpoints = {name: dataclasses.replace(
            endpoint, fn=_after(preprocessor, endpoint.fn, len(endpoint.extra_inputs)))
            for name, endpoint in endpoints.items()}
    archive = keras.export.ExportArchive()
    archive.track(model)
    if preprocessor is not None:
        archive.track(preprocessor)  # Its lookup tables.
    for name, endpoint in endpoints.items():
        checks = model_checks + [_extra_checks(spec) for spec in endpoint.extra_inputs]
        archive.add_endpoint(name, _checked(endpoint.fn, checks, 1 + len(endpoint.extra_inputs)),
                             input_signature=[input_signature, *endpoint.extra_inputs])
    if preprocessor is not None:
        ids = input_spec(model)
        archive.add_endpoint("token_ids", _checked(first.fn, [_input_checks(ids, vocabulary)], 1),
                             input_signature=[ids])
    _write_atomically(archive, filepath, parent, verbose)


def scalar_spec(name):
    """The spec of a float32 scalar input named `name`."""
    return tf.TensorSpec((), tf.float32, name=name)


def _write_atomically(archive, filepath, parent, verbose):
    """Writes `archive` to `filepath`: in a new folder next to it, moved there
    when whole; an existing `filepath` (a folder or a file) is replaced then
    and removed.  A failure at any step leaves what was there and no folder
    or file of its own."""
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(filepath)
    partial = tempfile.mkdtemp(prefix=f".{base}.partial-", dir=parent)
    replaced = None
    try:
        archive.write_out(partial, verbose=bool(verbose))
        if os.path.lexists(filepath):
            replaced = tempfile.mkdtemp(prefix=f".{base}.replaced-", dir=parent)
            os.replace(filepath, os.path.join(replaced, base))
            try:
                os.replace(partial, filepath)
            except BaseException:
                os.replace(os.path.join(replaced, base), filepath)  # Back as it was.
                raise
        else:
            os.replace(partial, filepath)
    finally:
        for leftover in (partial, replaced):
            if leftover is not None and os.path.lexists(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


def _checked(fn, checks, inputs):
    """`fn` whose inputs are first checked in the graph: `checks[i](x)` gives
    the assertions of input i (a traced signature takes no `*args`)."""
    def run(*given):
        asserts = [a for check, x in zip(checks, given) for a in check(x)]
        with tf.control_dependencies(asserts):
            given = [tf.identity(x) for x in given]
        return fn(*given)

    if inputs == 1:
        return lambda inputs: run(inputs)
    if inputs == 2:
        return lambda inputs, extra: run(inputs, extra)
    raise ValueError(f"An endpoint takes at most 1 input besides the model's, got "
                     f"{inputs - 1}.")


def _shape_check(spec, x):
    """An assertion that `x` has `spec`'s rank and known sizes (a SavedModel
    signature checks dtypes, not shapes)."""
    if not isinstance(spec, tf.TensorSpec) or spec.shape.rank is None:
        return []
    rank = spec.shape.rank
    shape = tf.shape(x, out_type=tf.int32)
    padded = tf.concat([shape, tf.zeros([rank], tf.int32)], 0)[:rank]
    ok = tf.equal(tf.size(shape), rank)
    for i, size in enumerate(spec.shape):
        if size is not None:
            ok = tf.logical_and(ok, tf.equal(padded[i], size))
    sizes = ["batch" if i == 0 and size is None else "any" if size is None else str(size)
             for i, size in enumerate(spec.shape)]
    wanted = ("be a scalar" if rank == 0
              else f"have shape ({', '.join(sizes)}{',' * (rank == 1)})")
    return [tf.debugging.Assert(ok, [f"`{spec.name}` must {wanted}; got shape", shape],
                                summarize=8)]


def _no_checks(x):
    return []


def _input_checks(spec, vocabulary_size):
    """The checks of the model's input `spec`: its shape; finite features, or
    token ids in `[0, vocabulary_size)`."""
    if not isinstance(spec, tf.TensorSpec):
        return _no_checks

    def check(x):
        asserts = _shape_check(spec, x)
        if x.dtype.is_floating:
            asserts.append(tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(x)), [
                f"`{spec.name}` holds NaN or Inf; the model takes finite features."]))
        elif vocabulary_size and x.dtype.is_integer:
            asserts.append(tf.debugging.Assert(
                tf.reduce_all((x >= 0) & (x < vocabulary_size)),
                [f"`{spec.name}`: token ids must be integers in [0, {vocabulary_size}) "
                 "(the model's vocabulary; 0 is padding); got ids from",
                 tf.reduce_min(x), "to", tf.reduce_max(x)]))
        return asserts

    return check


def _extra_checks(spec):
    """The checks of an endpoint's extra input: its shape; a `threshold` must
    be >= 0 (a confidence in [0, 1]; above 1: the full path), as
    `ALModel.predict`'s."""
    def check(x):
        asserts = _shape_check(spec, x)
        if spec.name == "threshold":
            asserts.append(tf.debugging.Assert(tf.reduce_all(x >= 0), [
                "The exit threshold must be >= 0 (a confidence in [0, 1]; above 1: the "
                "full path); got", x]))
        return asserts

    return check


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
    shape = keras_compat.built_input_shape(model)
    if shape is None:
        raise ValueError(
            "Build the model (call it on data, fit it, or model.build(shape)) "
            "before exporting, or pass input_signature."
        )
    shape = tuple(shape)[1:]
    vocabulary = getattr(model, "vocabulary_size", None)
    if vocabulary and shape and shape[-1] is None:  # The preprocessor's length.
        length = getattr(getattr(model, "preprocessor", None), "_output_sequence_length", None)
        shape = shape[:-1] + (length,)
    return tf.TensorSpec((None,) + shape, tf.int32 if vocabulary else tf.float32,
                         name="inputs")
