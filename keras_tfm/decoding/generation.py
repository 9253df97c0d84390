"""Autoregressive decoding for `build_transformer` models.

`generate` runs greedy search, sampling (temperature, top-k, nucleus) or
beam search over a model built by `keras_tfm.build_transformer`. It is
written with `keras.ops` only, around one `keras.ops.while_loop`, so the
same code runs eagerly, inside `tf.function(jit_compile=True)` and under
`jax.jit`; `make_generate_fn` wraps it in the right compiler for the
current backend.

Incremental decoding (`use_cache=True`, the default):

* the encoder runs once, and the keys and values of the encoder output are
  projected once per decoder layer (`Decoder.compute_cross_attention_cache`);
* each loop iteration feeds one token per sequence through the decoder,
  which writes its keys and values into the self-attention cache and
  attends over it;
* beam search reorders the self-attention cache along the batch axis with
  the parent-beam indices after every step. The cross-attention cache is
  identical for all beams of one example and is not reordered.

`use_cache=False` is the reference: the same loop, but every iteration runs
the whole decoder on the prefix buffer `[start, y_0, ..., y_{t-1}, 0, ...]`
(length `max_length`, 0-padded after the current step). Self-attention is
causal, so the padding after position t does not change the logits at t.

Two ways to run it. Compiled (the default: XLA on TensorFlow, `jax.jit`),
shapes are static: the cache is `max_length` long and attention spans all
of it, masked beyond the current position, so one program serves every
step; `generate` keeps one compiled function per model and settings.
With `dynamic_shapes` (TensorFlow graphs, such as the exported SavedModel,
and eager execution), the caches grow step by step and finished sentences
leave the batch, so a step costs what has been decoded so far.

The padding id (`PADDING_ID`, 0) is never generated (its logit is excluded from
the argmax, the sampling distribution and the beam candidates), so the
0-padding after the end token is unambiguous and a teacher-forced pass of
the model over the output sees exactly the tokens the decoder saw.

Example:
>>> model = build_transformer(config)
>>> tokens, scores = generate(model, source_ids)  # beam 4, penalty 0.6
>>> tokens, scores = generate(model, source_ids, method="greedy", max_length=64)
>>> ids = src_tokenizer.tokenize(["Ein Mann fährt Fahrrad."]).to_tensor()
>>> tokens, scores = generate(model, ids, append_source_end=True, n_best=4)
"""

import inspect
import weakref

import keras
import numpy as np
from keras import ops

from keras_tfm.constants import END_ID, PADDING_ID, START_ID
from keras_tfm.decoding.beam_search import beam_search, length_penalty
from keras_tfm.decoding.decoder_step import decoder_step
from keras_tfm.decoding.greedy_search import (
    compacting_greedy_search,
    greedy_choice,
    sampler,
    sequential_search,
)
from keras_tfm.decoding.options import DecodingOptions
from keras_tfm.decoding.token_buffers import append_end, forbid_before
from keras_tfm.errors import FieldError, check_int
from keras_tfm.models.transformer import transformer_parts

__all__ = ["generate", "length_penalty", "make_generate_fn"]

_DEFAULTS = DecodingOptions()


def generate(
    model,
    source_ids,
    *,
    start_id=START_ID,
    end_id=END_ID,
    max_length=_DEFAULTS.max_length,
    method=_DEFAULTS.method,
    beam_size=_DEFAULTS.beam_size,
    length_penalty=_DEFAULTS.length_penalty,
    min_length=0,
    n_best=None,
    append_source_end=False,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    use_cache=True,
    jit_compile=True,
    dynamic_shapes=None,
):
    """Decodes target sequences for a batch of source sequences.

    Args:
        model: a `keras_tfm.build_transformer` model (its layers are found
            with `keras_tfm.transformer_parts`).
        source_ids: int tensor `(batch, source_length)`, right-padded with
            0. keras_tfm trains on sources that end with the end id
            (`Tokenizer.tokenize_source`); see `append_source_end`.
        start_id: the token that starts every decoder input (not returned).
            Default: `START_ID` (2), every keras_tfm tokenizer's start id.
        end_id: the end-of-sequence token; decoding of a sequence stops
            after it, and it is included in the output. Default: `END_ID`
            (3), every keras_tfm tokenizer's end id.
        max_length, method, beam_size, length_penalty: as
            `keras_tfm.decoding.options.DecodingOptions`, with its defaults (the
            paper's beam search: 4 beams, length penalty 0.6, up to the
            model's `max_length` tokens). `method` is "beam", "greedy" or
            "sample"; `max_length` is the most tokens generated per
            sequence, end token included, at most the model's.
        min_length: the fewest tokens generated before the end token: it
            cannot be chosen at the first `min_length` steps (its
            probability still counts in the scores' normalisation, as in
            CTranslate2's `min_decoding_length`). At most `max_length - 1`.
        n_best: None (default) returns the best hypothesis per sentence; an
            int n (<= `beam_size`, 1 for greedy and sampling) returns the n
            best, with an extra axis: tokens `(batch, n, max_length)` and
            scores `(batch, n)`, best first (finished hypotheses by score,
            then unfinished ones where fewer than n finished).
        append_source_end: append the end id `END_ID` after the last id of
            each non-empty source row, as keras_tfm's training data does,
            for ids straight from `Tokenizer.tokenize`. A row that already
            holds the model's `max_length` ids gets it in place of its last.
        temperature: > 0; divides the logits before sampling.
        top_k: sample only among the k most likely tokens.
        top_p: sample only from the nucleus: the smallest set of most likely
            tokens whose probability reaches `top_p` (after temperature and
            top-k).
        seed: for "sample": an int (same seed, same samples), a
            `keras.random.SeedGenerator`, or None for Keras' global
            generator (not traceable under `jax.jit`). One uniform number
            per sequence and step is drawn before the loop; note that
            TensorFlow's stateless RNG gives different numbers under XLA
            than eagerly, so an int seed reproduces samples within one
            mode, not across `jit_compile` and eager.
        use_cache: incremental decoding with key/value caches; False re-runs
            the full decoder on the prefix at every step (slow, the
            reference).
        jit_compile: compile the decoding (XLA on TensorFlow, `jax.jit` on
            JAX) once per model, static settings and input shape, and keep
            the compiled function for later calls; inputs are padded with
            empty rows to a power-of-two batch and with padding to a
            multiple of 16 tokens, so a new batch rarely compiles again.
            False runs the loop op by op (for debugging; slow). Inside a
            function being traced (`tf.function`, `jax.jit`), `generate` is
            traced into it either way.
        dynamic_shapes: let shapes change from step to step: the
            self-attention caches grow with the output instead of being
            preallocated for `max_length`, so each step reads and copies
            only what has been decoded. Faster in TensorFlow graphs and
            eager execution; impossible under XLA and `jax.jit`. None (the
            default): only where `generate` runs eagerly on TensorFlow
            (`jit_compile=False`); the SavedModel export sets it.

    Returns:
        `(token_ids, scores)`:
        * `token_ids`: int32 `(batch, max_length)`, the generated tokens
          without the start token, the end token included when produced,
          0-padded after it. The width is always `max_length` so that the
          shape is static under `jit`; trim trailing all-zero columns if
          needed.
        * `scores`: float32 `(batch,)`. For "greedy" and "sample", the total
          log-probability of the returned tokens under the model, i.e. the
          sum of `log_softmax(logits)[token]` over the unmodified logits
          (temperature 1, no filtering) of every id but padding, which is
          never generated. For "beam", the
          ranking score: that total log-probability divided by
          `length_penalty(len, alpha)` where `len` counts the returned
          tokens (end token included).

    Beam search follows tensor2tensor: the `2 * beam_size` best extensions
    of the live beams are split into finished and alive. Those ending with
    `end_id` and ranked within the first `beam_size` (the extensions a beam
    of that width holds; fairseq's rule, stricter than tensor2tensor which
    accepts all 2 * beam_size) enter a buffer of the `beam_size` best
    finished hypotheses (by normalised score); the best `beam_size` that do
    not end stay alive (there are always enough, as at most one extension
    per live beam ends). An example is done when its best finished
    hypothesis beats the best a live beam could still reach (its raw
    log-probability over the largest penalty, that of `max_length`; valid
    for alpha >= 0 since log-probabilities only decrease). The result is
    the best finished hypothesis, or the best live beam (normalised with the
    penalty of its length) for an example where none finished. With
    `beam_size=1` and `length_penalty=0` beam search returns the greedy
    tokens; with alpha > 0 it may prefer a longer hypothesis.

    Decoding stops when every sequence has ended (or every beam search
    example is done) or after `max_length` tokens. A source row of padding
    only is empty: its output is all padding, with score 0, and it costs no
    decoding steps of its own.
    """
    settings = dict(
        start_id=start_id,
        end_id=end_id,
        max_length=max_length,
        method=method,
        beam_size=beam_size,
        length_penalty=length_penalty,
        min_length=min_length,
        n_best=n_best,
        append_source_end=append_source_end,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        use_cache=use_cache,
    )
    _resolve(model, settings)  # fails here, not inside a compiled function
    if jit_compile and not _is_traced(source_ids):
        if dynamic_shapes:
            raise ValueError("generate: dynamic_shapes needs jit_compile=False")
        return _compiled_generate(model, source_ids, settings)
    if dynamic_shapes is None:
        dynamic_shapes = not _is_traced(source_ids)
    if dynamic_shapes and keras.config.backend() != "tensorflow":
        dynamic_shapes = False  # JAX traces every step with static shapes
    return _generate(model, source_ids, dynamic_shapes=dynamic_shapes, **settings)


def _resolve(model, settings):
    """The settings checked against the model: `(options, top_k, vocab)`."""
    parts = transformer_parts(model)
    _, target_embedding, _, decoder, project = parts
    vocab_size = getattr(project, "vocab_size", None) or target_embedding.vocab_size
    start_id, end_id = settings["start_id"], settings["end_id"]
    temperature, top_k = settings["temperature"], settings["top_k"]
    top_p = settings["top_p"]
    try:
        options = DecodingOptions(
            settings["method"],
            settings["beam_size"],
            settings["length_penalty"],
            settings["max_length"],
        ).for_model(decoder.max_length)
        for name, value in (("start_id", start_id), ("end_id", end_id)):
            check_int("generate", name, value, 1)
            if value >= vocab_size:
                raise FieldError(
                    "generate",
                    name,
                    f"={value} is outside the target vocabulary of size {vocab_size}",
                )
        if options.method == "sample":
            if not temperature > 0:
                raise FieldError(
                    "generate", "temperature", f"must be > 0, got {temperature}"
                )
            if top_k is not None:
                top_k = min(check_int("generate", "top_k", top_k, 1), vocab_size)
            if top_p is not None and not 0 < top_p <= 1:
                raise FieldError("generate", "top_p", f"must be in (0, 1], got {top_p}")
        min_length = check_int("generate", "min_length", settings["min_length"], 0)
        if min_length >= options.max_length:
            raise FieldError(
                "generate",
                "min_length",
                f"is {min_length}: no room is left for the end token within "
                f"max_length {options.max_length}",
            )
        n_best = settings["n_best"]
        if n_best is not None:
            check_int("generate", "n_best", n_best, 1)
            beams = options.beam_size if options.method == "beam" else 1
            if n_best > beams:
                raise FieldError(
                    "generate",
                    "n_best",
                    f"is {n_best}, more than the {beams} hypotheses "
                    f"{options.method} search keeps (beam_size)",
                )
    except FieldError as error:
        raise ValueError(f"generate: {error.field} {error.problem}") from None
    return options, top_k, vocab_size


def _is_traced(tensor):
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


def _compiled_generate(model, source_ids, settings):
    """`generate` through a cached compiled function, on padded inputs."""
    source = np.asarray(ops.convert_to_numpy(source_ids)).astype("int32")
    if source.ndim != 2:
        raise ValueError(
            f"generate: source_ids must be (batch, length), got shape {source.shape}"
        )
    rows, length = source.shape
    max_length = _resolve(model, settings)[0].max_length
    if rows == 0:
        n_best = settings["n_best"]
        shape = (0,) if n_best is None else (0, n_best)
        return (
            ops.zeros(shape + (max_length,), "int32"),
            ops.zeros(shape, "float32"),
        )
    limit = model.get_layer("encoder").max_length
    padded_length = max(length, min(-(-length // 16) * 16, limit))
    padded = np.full((1 << (rows - 1).bit_length(), padded_length), PADDING_ID, "int32")
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


def _generate(
    model,
    source_ids,
    *,
    start_id,
    end_id,
    max_length,
    method,
    beam_size,
    length_penalty,
    min_length,
    n_best,
    append_source_end,
    temperature,
    top_k,
    top_p,
    seed,
    use_cache,
    dynamic_shapes=False,
):
    """`generate`'s decoding itself (static shapes: traceable by any compiler)."""
    settings = dict(
        start_id=start_id,
        end_id=end_id,
        max_length=max_length,
        method=method,
        beam_size=beam_size,
        length_penalty=length_penalty,
        min_length=min_length,
        n_best=n_best,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )
    options, top_k, vocab_size = _resolve(model, settings)
    parts = transformer_parts(model)
    method, max_length = options.method, options.max_length
    beam_size = options.beam_size if method == "beam" else 1

    source_ids = ops.cast(source_ids, "int32")
    if append_source_end:
        source_ids = append_end(
            source_ids, END_ID, model.get_layer("encoder").max_length
        )
    batch_size = ops.shape(source_ids)[0]
    empty = ops.logical_not(ops.any(ops.not_equal(source_ids, PADDING_ID), axis=1))
    step, state = decoder_step(
        parts, source_ids, max_length, use_cache, beam_size, dynamic_shapes
    )

    def restrict(logits, t):
        return forbid_before(logits, end_id, t, min_length)

    if method == "beam":
        tokens, scores = beam_search(
            step,
            state,
            batch_size,
            max_length,
            start_id,
            end_id,
            vocab_size,
            beam_size,
            options.length_penalty,
            empty,
            compact=dynamic_shapes and use_cache,
            n_best=n_best or 1,
            restrict=restrict,
        )
        if n_best is None:
            return tokens[:, 0], scores[:, 0]
        return tokens, scores
    if method == "greedy":
        choose = greedy_choice
    else:
        uniforms = keras.random.uniform(
            (max_length, batch_size), dtype="float32", seed=seed
        )
        choose = sampler(uniforms, temperature, top_k, top_p)
    if min_length:
        unrestricted = choose

        def choose(logits, t):
            return unrestricted(restrict(logits, t), t)

    if method == "greedy" and dynamic_shapes and use_cache:
        search = compacting_greedy_search
    else:
        search = sequential_search
    tokens, scores = search(
        step, state, choose, batch_size, max_length, start_id, end_id, empty
    )
    if n_best is None:
        return tokens, scores
    return tokens[:, None], scores[:, None]


def make_generate_fn(model, **generate_kwargs):
    """`source_ids -> generate(model, source_ids, **generate_kwargs)`, compiled.

    TensorFlow: `tf.function(jit_compile=True)`. JAX: `jax.jit` with the
    model's variables passed as arguments (a `keras.StatelessScope`), so
    later weight updates are seen without retracing. Other backends: the
    plain function. For "sample" without a `seed`, a fresh
    `keras.random.SeedGenerator` is used, so every call draws new samples;
    an int seed gives the same samples at every call.
    """
    kwargs = dict(generate_kwargs)
    kwargs.pop("jit_compile", None)
    if kwargs.get("method") in ("sample", "sampling"):
        if kwargs.get("seed") is None:
            kwargs["seed"] = keras.random.SeedGenerator()
    # `generate`'s own defaults, less the options of how it runs.
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(generate).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        and name not in ("jit_compile", "dynamic_shapes")
    }
    kwargs = {**defaults, **kwargs}
    backend = keras.config.backend()

    def plain(source_ids):
        return _generate(model, source_ids, **kwargs)

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
