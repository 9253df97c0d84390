"""Compiled decoding: `make_generate_fn`, and the compiled functions
`generate` keeps per model and settings."""

import weakref

import keras
import numpy as np
from keras import ops

from keras_tfm.constants import PADDING_ID
from keras_tfm.decoding.compile_shapes import padded_length, padded_rows
from keras_tfm.decoding.decode import (
    OPTION_FIELDS,
    SETTING_DEFAULTS,
    decode,
    decoding_options,
    resolve,
)


def is_traced(tensor):
    """Whether `tensor` belongs to a function being traced (not a value)."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly() or tf.is_symbolic_tensor(tensor)
    if backend == "jax":
        import jax

        return isinstance(tensor, jax.core.Tracer)
    return False


# Compiled decoding functions, per model and static settings; they go with
# the model.
_COMPILED = weakref.WeakKeyDictionary()


def compiled_generate(model, source_ids, settings):
    """`generate` through a cached compiled function, on padded inputs."""
    source = np.asarray(ops.convert_to_numpy(source_ids)).astype("int32")
    if source.ndim != 2:
        raise ValueError(
            f"generate: source_ids must be (batch, length), got shape {source.shape}"
        )
    rows, length = source.shape
    max_length = resolve(model, settings)[0].max_length
    if rows == 0:
        n_best = settings["n_best"]
        shape = (0,) if n_best is None else (0, n_best)
        return (
            ops.zeros(shape + (max_length,), "int32"),
            ops.zeros(shape, "float32"),
        )
    width = padded_length(length, model.config.max_length) if length else 0
    padded = np.full((padded_rows(rows), width), PADDING_ID, "int32")
    padded[:rows, :length] = source
    key = tuple(
        (name, id(value) if isinstance(value, keras.random.SeedGenerator) else value)
        for name, value in sorted(settings.items())
    )
    functions = _COMPILED.setdefault(model, {})
    if key not in functions:
        functions[key] = make_generate_fn(model, **settings)
    tokens, scores = functions[key](padded)
    return tokens[:rows], scores[:rows]


def make_generate_fn(model, options=None, **generate_kwargs):
    """`source_ids -> generate(model, source_ids, options, **generate_kwargs)`,
    compiled.

    TensorFlow: `tf.function(jit_compile=True)`. JAX: `jax.jit` with the
    model's variables passed as arguments (a `keras.StatelessScope`), so
    later weight updates are seen without retracing. Other backends: the
    plain function. For "sample" without a `seed`, a fresh
    `keras.random.SeedGenerator` is used, so every call draws new samples;
    an int seed gives the same samples at every call.
    """
    kwargs = dict(generate_kwargs)
    kwargs.pop("jit_compile", None)
    kwargs.pop("dynamic_shapes", None)
    fields = {name: kwargs.pop(name, None) for name in OPTION_FIELDS}
    options = decoding_options(kwargs.pop("options", options), **fields)
    if options.method == "sample" and kwargs.get("seed") is None:
        kwargs["seed"] = keras.random.SeedGenerator()
    kwargs = {**SETTING_DEFAULTS, **kwargs, "options": options}
    backend = keras.config.backend()

    def plain(source_ids):
        return decode(model, source_ids, **kwargs)

    if backend == "tensorflow":
        import tensorflow as tf

        # The loop is an explicit ops.while_loop: no autograph needed.
        return tf.function(plain, jit_compile=True, autograph=False)
    if backend != "jax":
        return plain

    import jax

    variables = list(model.variables)
    seed = kwargs.get("seed")
    if isinstance(seed, keras.random.SeedGenerator):
        variables.append(seed.state)

    def stateless(values, source_ids):
        mapping = list(zip(variables, values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = plain(source_ids)
        new_values = [scope.get_current_value(v) for v in variables]
        new_values = [
            old if new is None else new for old, new in zip(values, new_values)
        ]
        return outputs, new_values

    jitted = jax.jit(stateless)

    def call(source_ids):
        outputs, new_values = jitted([v.value for v in variables], source_ids)
        if isinstance(seed, keras.random.SeedGenerator):
            seed.state.assign(new_values[-1])
        return outputs

    return call
