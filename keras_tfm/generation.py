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
* the self-attention keys and values live in a cache preallocated for
  `max_length` positions; each loop iteration feeds one token per sequence
  through the decoder, which writes its keys and values at the current
  index (`layers.multi_head_attention.write_cache`, a scatter) and attends
  over the cache with a causal mask;
* beam search reorders the self-attention cache along the batch axis with
  the parent-beam indices after every step. The cross-attention cache is
  identical for all beams of one example and is never reordered.

`use_cache=False` is the reference: the same loop, but every iteration runs
the whole decoder on the prefix buffer `[start, y_0, ..., y_{t-1}, 0, ...]`
(length `max_length`, 0-padded after the current step). Self-attention is
causal, so the padding after position t does not change the logits at t.

Performance notes: shapes are static (the cache is `max_length` long and
attention at each step spans all of it, masked beyond the current
position), so one compiled program serves every step; the per-step cost of
the projections and feed-forwards is one token per sequence. Eager
TensorFlow runs the loop op by op (slow: compile it), and eager JAX
compiles the loop body at every call (seconds): for repeated calls use
`make_generate_fn`, which compiles once per input shape.

The padding id (`PADDING_ID`, 0) is never generated (its logit is excluded from
the argmax, the sampling distribution and the beam candidates), so the
0-padding after the end token is unambiguous and a teacher-forced pass of
the model over the output sees exactly the tokens the decoder saw.

Example:
>>> model = build_transformer(config)
>>> tokens, scores = generate(model, source_ids, start_id=2, end_id=3)
>>> tokens, scores = generate(model, source_ids, start_id=2, end_id=3,
...                           method="greedy", max_length=64)
"""

import weakref

import keras
import numpy as np
from keras import ops

from keras_tfm.beam_search import beam_search, length_penalty
from keras_tfm.config import DecodingOptions, FieldError, check_int
from keras_tfm.layers.token_embedding import PADDING_ID
from keras_tfm.model import transformer_parts
from keras_tfm.token_buffers import exclude_padding, start_buffer, write_column

__all__ = ["generate", "length_penalty", "make_generate_fn"]

_DEFAULTS = DecodingOptions()


def generate(
    model,
    source_ids,
    *,
    start_id,
    end_id,
    max_length=_DEFAULTS.max_length,
    method=_DEFAULTS.method,
    beam_size=_DEFAULTS.beam_size,
    length_penalty=_DEFAULTS.length_penalty,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    use_cache=True,
    jit_compile=True,
):
    """Decodes target sequences for a batch of source sequences.

    Args:
        model: a `keras_tfm.build_transformer` model (its layers are found
            with `keras_tfm.transformer_parts`).
        source_ids: int tensor `(batch, source_length)`, 0 = padding.
        start_id: the token that starts every decoder input (not returned).
        end_id: the end-of-sequence token; decoding of a sequence stops
            after it, and it is included in the output.
        max_length, method, beam_size, length_penalty: as
            `keras_tfm.config.DecodingOptions`, with its defaults (the
            paper's beam search: 4 beams, length penalty 0.6, up to the
            model's `max_length` tokens). `method` is "beam", "greedy" or
            "sample"; `max_length` is the most tokens generated per
            sequence, end token included, at most the model's.
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
          (temperature 1, no filtering, full vocabulary). For "beam", the
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
    per live beam ends). An example is done when its worst kept finished
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
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        use_cache=use_cache,
    )
    _resolve(model, settings)  # fails here, not inside a compiled function
    if jit_compile and not _is_traced(source_ids):
        return _compiled_generate(model, source_ids, settings)
    return _generate(model, source_ids, **settings)


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
        return (
            ops.zeros((0, max_length), "int32"),
            ops.zeros((0,), "float32"),
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
    temperature,
    top_k,
    top_p,
    seed,
    use_cache,
):
    """`generate`'s decoding itself, traceable by any compiler."""
    settings = dict(
        start_id=start_id,
        end_id=end_id,
        max_length=max_length,
        method=method,
        beam_size=beam_size,
        length_penalty=length_penalty,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )
    options, top_k, vocab_size = _resolve(model, settings)
    parts = transformer_parts(model)
    method, max_length = options.method, options.max_length
    beam_size = options.beam_size if method == "beam" else 1

    source_ids = ops.cast(source_ids, "int32")
    batch_size = ops.shape(source_ids)[0]
    empty = ops.logical_not(ops.any(ops.not_equal(source_ids, PADDING_ID), axis=1))
    step, state = decoder_step(parts, source_ids, max_length, use_cache, beam_size)
    if method == "beam":
        return beam_search(
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
        )
    if method == "greedy":
        choose = _greedy_choice
    else:
        uniforms = keras.random.uniform(
            (max_length, batch_size), dtype="float32", seed=seed
        )
        choose = _sampler(uniforms, temperature, top_k, top_p)
    return _sequential_search(
        step, state, choose, batch_size, max_length, start_id, end_id, empty
    )


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
    defaults = dict(
        max_length=_DEFAULTS.max_length,
        method=_DEFAULTS.method,
        beam_size=_DEFAULTS.beam_size,
        length_penalty=_DEFAULTS.length_penalty,
        temperature=1.0,
        top_k=None,
        top_p=None,
        seed=None,
        use_cache=True,
    )
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


def decoder_step(parts, source_ids, max_length, use_cache, repeat):
    """Runs the encoder once; returns `(step, initial_state)`.

    `step(sequences, t, state) -> (logits, state)` gives float32 logits
    `(batch * repeat, vocab)` for position `t` of `sequences`, the int32
    decoder-input buffer `(batch * repeat, max_length + 1)` whose column 0
    is the start token and column t + 1 the token generated at step t.
    `state` is a tuple: `(self_attention_cache,)` with `use_cache`, else
    empty. Everything that does not depend on the step (encoder output,
    cross-attention keys and values, source mask) is computed here, once,
    already repeated for the beams.
    """
    source_embedding, target_embedding, encoder, decoder, project = parts
    source_mask = ops.not_equal(source_ids, PADDING_ID)
    memory = encoder(source_embedding(source_ids), mask=source_mask, training=False)
    if repeat > 1:
        source_mask = ops.repeat(source_mask, repeat, axis=0)

    if use_cache:
        cross_cache = decoder.compute_cross_attention_cache(memory)
        if repeat > 1:
            cross_cache = keras.tree.map_structure(
                lambda cache: ops.repeat(cache, repeat, axis=0), cross_cache
            )
        batch = ops.shape(source_ids)[0] * repeat
        state = (decoder.initial_self_attention_cache(batch, max_length),)

        def step(sequences, t, state):
            tokens = ops.expand_dims(ops.take(sequences, t, axis=1), 1)
            hidden, cache, _ = decoder(
                target_embedding(tokens),
                None,
                encoder_sequence_mask=source_mask,
                self_attention_cache=state[0],
                self_attention_cache_update_index=t,
                cross_attention_cache=cross_cache,
                training=False,
            )
            return project(hidden)[:, 0], (cache,)

        return step, state

    if repeat > 1:
        memory = ops.repeat(memory, repeat, axis=0)

    def step(sequences, t, state):
        prefix = sequences[:, :max_length]
        hidden = decoder(
            target_embedding(prefix),
            memory,
            decoder_sequence_mask=ops.not_equal(prefix, PADDING_ID),
            encoder_sequence_mask=source_mask,
            training=False,
        )
        # Only position t is needed: project that one row.
        current = ops.expand_dims(ops.take(hidden, t, axis=1), 1)
        return project(current)[:, 0], state

    return step, ()


def _greedy_choice(logits, t):
    return ops.cast(ops.argmax(exclude_padding(logits), axis=-1), "int32")


def _sampler(uniforms, temperature, top_k, top_p):
    """Inverse-CDF sampling with the pre-drawn `uniforms[t]` `(batch,)`.

    Drawing all uniforms before the loop keeps the loop free of random-state
    updates (so it traces under `jax.jit`) and costs one float per token.
    """

    def choose(logits, t):
        if top_k == 1:
            return _greedy_choice(logits, t)
        scaled = exclude_padding(logits / temperature)
        vocab = scaled.shape[-1]
        candidates = None
        if top_k is not None and top_k < vocab:
            scaled, candidates = ops.top_k(scaled, top_k)
        elif top_p is not None and top_p < 1:
            scaled, candidates = ops.top_k(scaled, vocab)  # a full sort
        probs = ops.softmax(scaled, axis=-1)
        if top_p is not None and top_p < 1:
            # `probs` is sorted: keep the tokens whose preceding mass is
            # below top_p (the first one always).
            preceding = ops.cumsum(probs, axis=-1) - probs
            probs = ops.where(ops.less(preceding, top_p), probs, 0.0)
        cdf = ops.cumsum(probs, axis=-1)
        target = ops.take(uniforms, t, axis=0)[:, None] * cdf[:, -1:]
        index = ops.sum(ops.cast(ops.less_equal(cdf, target), "int32"), axis=-1)
        # Rounding can push the index past the last token with mass.
        width = ops.shape(probs)[-1]
        last_valid = (width - 1) - ops.argmax(
            ops.flip(ops.greater(probs, 0.0), axis=-1), axis=-1
        )
        index = ops.minimum(index, ops.cast(last_valid, "int32"))
        if candidates is None:
            return index
        return ops.take_along_axis(
            ops.cast(candidates, "int32"), index[:, None], axis=-1
        )[:, 0]

    return choose


def _sequential_search(step, state, choose, batch, max_length, start_id, end_id, empty):
    """Greedy search or sampling: one token per sequence per iteration.

    Rows with an `empty` source start finished.
    """

    def cond(t, sequences, finished, scores, state):
        return ops.logical_and(
            ops.less(t, max_length), ops.logical_not(ops.all(finished))
        )

    def body(t, sequences, finished, scores, state):
        logits, state = step(sequences, t, state)
        tokens = choose(logits, t)
        log_probs = ops.log_softmax(logits, axis=-1)
        token_log_probs = ops.take_along_axis(log_probs, tokens[:, None], axis=-1)
        tokens = ops.where(finished, PADDING_ID, tokens)
        scores = scores + ops.where(finished, 0.0, token_log_probs[:, 0])
        sequences = write_column(sequences, t + 1, tokens)
        finished = ops.logical_or(finished, ops.equal(tokens, end_id))
        return t + 1, sequences, finished, scores, state

    loop_vars = (
        ops.convert_to_tensor(0, dtype="int32"),
        start_buffer(batch, max_length, start_id),
        empty,
        ops.zeros((batch,), dtype="float32"),
        state,
    )
    _, sequences, _, scores, _ = ops.while_loop(
        cond, body, loop_vars, maximum_iterations=max_length
    )
    return sequences[:, 1:], scores
