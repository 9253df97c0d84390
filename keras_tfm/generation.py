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
  index (`slice_update`) and attends over the cache with a causal mask;
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

Token id 0 is padding: it is never generated (its logit is excluded from
the argmax, the sampling distribution and the beam candidates), so the
0-padding after the end token is unambiguous and a teacher-forced pass of
the model over the output sees exactly the tokens the decoder saw.

Example:
>>> model = build_transformer(config)
>>> tokens, scores = generate(model, source_ids, max_length=64,
...                           start_id=1, end_id=2, method="beam")
"""

import keras
from keras import ops

from keras_tfm.model import transformer_parts

__all__ = ["generate", "length_penalty", "make_generate_fn"]

# A large finite negative rather than -inf: sums and differences of it stay
# finite, and it still loses against any real log-probability.
NEG_INF = -1.0e9

_METHODS = {
    "greedy": "greedy",
    "sample": "sample",
    "sampling": "sample",
    "beam": "beam",
    "beam_search": "beam",
}


def length_penalty(length, alpha):
    """GNMT length penalty `((5 + length) / 6) ** alpha` (Wu et al., 2016).

    `length` may be a Python number or a tensor; the result is float32.
    """
    length = ops.cast(length, "float32")
    return ops.power((5.0 + length) / 6.0, float(alpha))


def generate(
    model,
    source_ids,
    *,
    max_length,
    start_id,
    end_id,
    method="greedy",
    beam_size=4,
    length_penalty=0.6,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    use_cache=True,
):
    """Decodes target sequences for a batch of source sequences.

    Args:
        model: a `keras_tfm.build_transformer` model (its layers are found
            with `keras_tfm.transformer_parts`).
        source_ids: int tensor `(batch, source_length)`, 0 = padding.
        max_length: the most tokens to generate per sequence (Python int,
            at most the model's `max_length`). The end token counts.
        start_id: the token that starts every decoder input (not returned).
        end_id: the end-of-sequence token; decoding of a sequence stops
            after it, and it is included in the output.
        method: "greedy", "sample" or "beam".
        beam_size: beams per example for "beam".
        length_penalty: alpha of the GNMT length penalty for "beam"
            (0 ranks by the raw log-probability).
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
    example is done) or after `max_length` tokens.
    """
    method = _METHODS.get(method)
    if method is None:
        raise ValueError(
            f"generate: unknown method; choose from {sorted(set(_METHODS))}"
        )
    parts = transformer_parts(model)
    source_embedding, target_embedding, encoder, decoder, project = parts
    vocab_size = getattr(project, "vocab_size", None) or target_embedding.vocab_size
    max_length = _check_int("max_length", max_length, 1)
    if max_length > decoder.max_length:
        raise ValueError(
            f"generate: max_length={max_length} exceeds the model's "
            f"max_length={decoder.max_length}"
        )
    for name, value in (("start_id", start_id), ("end_id", end_id)):
        _check_int(name, value, 1)
        if value >= vocab_size:
            raise ValueError(
                f"generate: {name}={value} is outside the target vocabulary "
                f"of size {vocab_size}"
            )
    beam_size = _check_int("beam_size", beam_size, 1) if method == "beam" else 1
    if method == "beam" and length_penalty < 0:
        raise ValueError(f"generate: length_penalty must be >= 0, got {length_penalty}")
    if method == "sample":
        if not temperature > 0:
            raise ValueError(f"generate: temperature must be > 0, got {temperature}")
        if top_k is not None:
            top_k = min(_check_int("top_k", top_k, 1), vocab_size)
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")

    source_ids = ops.cast(source_ids, "int32")
    batch_size = ops.shape(source_ids)[0]
    step, state = _decoder_step(parts, source_ids, max_length, use_cache, beam_size)
    if method == "beam":
        return _beam_search(
            step,
            state,
            batch_size,
            max_length,
            start_id,
            end_id,
            vocab_size,
            beam_size,
            length_penalty,
        )
    if method == "greedy":
        choose = _greedy_choice
    else:
        uniforms = keras.random.uniform(
            (max_length, batch_size), dtype="float32", seed=seed
        )
        choose = _sampler(uniforms, temperature, top_k, top_p)
    return _sequential_search(
        step, state, choose, batch_size, max_length, start_id, end_id
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
    if _METHODS.get(kwargs.get("method", "greedy")) == "sample":
        if kwargs.get("seed") is None:
            kwargs["seed"] = keras.random.SeedGenerator()
    backend = keras.config.backend()

    def plain(source_ids):
        return generate(model, source_ids, **kwargs)

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


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"generate: {name} must be an int >= {minimum}, got {value!r}")
    return value


def _decoder_step(parts, source_ids, max_length, use_cache, repeat):
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
    source_mask = ops.not_equal(source_ids, 0)
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
            decoder_sequence_mask=ops.not_equal(prefix, 0),
            encoder_sequence_mask=source_mask,
            training=False,
        )
        # Only position t is needed: project that one row.
        current = ops.expand_dims(ops.take(hidden, t, axis=1), 1)
        return project(current)[:, 0], state

    return step, ()


def _start_buffer(batch, max_length, start_id):
    """int32 `(batch, max_length + 1)`: start_id then zeros."""
    return ops.concatenate(
        [
            ops.full((batch, 1), start_id, dtype="int32"),
            ops.zeros((batch, max_length), dtype="int32"),
        ],
        axis=1,
    )


def _exclude_padding(logits):
    """Sets the logit of the padding id 0 to NEG_INF."""
    vocab = ops.shape(logits)[-1]
    is_pad = ops.equal(ops.arange(vocab, dtype="int32"), 0)
    return ops.where(is_pad, ops.cast(NEG_INF, logits.dtype), logits)


def _greedy_choice(logits, t):
    return ops.cast(ops.argmax(_exclude_padding(logits), axis=-1), "int32")


def _sampler(uniforms, temperature, top_k, top_p):
    """Inverse-CDF sampling with the pre-drawn `uniforms[t]` `(batch,)`.

    Drawing all uniforms before the loop keeps the loop free of random-state
    updates (so it traces under `jax.jit`) and costs one float per token.
    """

    def choose(logits, t):
        if top_k == 1:
            return _greedy_choice(logits, t)
        scaled = _exclude_padding(logits / temperature)
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


def _sequential_search(step, state, choose, batch, max_length, start_id, end_id):
    """Greedy search or sampling: one token per sequence per iteration."""

    def cond(t, sequences, finished, scores, state):
        return ops.logical_and(
            ops.less(t, max_length), ops.logical_not(ops.all(finished))
        )

    def body(t, sequences, finished, scores, state):
        logits, state = step(sequences, t, state)
        tokens = choose(logits, t)
        log_probs = ops.log_softmax(logits, axis=-1)
        token_log_probs = ops.take_along_axis(log_probs, tokens[:, None], axis=-1)
        tokens = ops.where(finished, 0, tokens)
        scores = scores + ops.where(finished, 0.0, token_log_probs[:, 0])
        sequences = ops.slice_update(sequences, [0, t + 1], tokens[:, None])
        finished = ops.logical_or(finished, ops.equal(tokens, end_id))
        return t + 1, sequences, finished, scores, state

    loop_vars = (
        ops.convert_to_tensor(0, dtype="int32"),
        _start_buffer(batch, max_length, start_id),
        ops.zeros((batch,), dtype="bool"),
        ops.zeros((batch,), dtype="float32"),
        state,
    )
    _, sequences, _, scores, _ = ops.while_loop(
        cond, body, loop_vars, maximum_iterations=max_length
    )
    return sequences[:, 1:], scores


def _gather_beams(values, indices, width):
    """`values` `(batch, width, ...)`, `indices` `(batch, k)` -> `(batch, k, ...)`."""
    batch = ops.shape(indices)[0]
    k = indices.shape[1]
    offsets = ops.arange(batch, dtype="int32")[:, None] * width
    flat_indices = ops.reshape(indices + offsets, (-1,))
    trailing = tuple(values.shape[2:])
    flat = ops.reshape(values, (-1,) + trailing)
    return ops.reshape(ops.take(flat, flat_indices, axis=0), (-1, k) + trailing)


def _beam_search(
    step, state, batch, max_length, start_id, end_id, vocab, beam_size, alpha
):
    """tensor2tensor-style beam search over `batch * beam_size` rows."""
    k = beam_size
    width = max_length + 1
    # Bound on the normalised score any live beam can still reach.
    max_penalty = length_penalty(max_length, alpha)
    neg_inf = ops.convert_to_tensor(NEG_INF, dtype="float32")

    def cond(t, alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, state):
        best_alive_bound = alive_scores[:, 0] / max_penalty
        worst_finished = ops.min(ops.where(fin_flags, fin_scores, -NEG_INF), axis=1)
        done = ops.logical_and(
            ops.any(fin_flags, axis=1),
            ops.greater(worst_finished, best_alive_bound),
        )
        return ops.logical_and(ops.less(t, max_length), ops.logical_not(ops.all(done)))

    def body(t, alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, state):
        flat_seq = ops.reshape(alive_seq, (-1, width))
        logits, state = step(flat_seq, t, state)
        log_probs = _exclude_padding(ops.log_softmax(logits, axis=-1))
        candidates = alive_scores[:, :, None] + ops.reshape(log_probs, (-1, k, vocab))
        top_scores, top_ids = ops.top_k(ops.reshape(candidates, (-1, k * vocab)), 2 * k)
        top_ids = ops.cast(top_ids, "int32")
        parents = top_ids // vocab
        tokens = top_ids % vocab
        top_seq = _gather_beams(alive_seq, parents, k)  # (batch, 2k, width)
        top_seq = ops.reshape(top_seq, (-1, width))
        top_seq = ops.slice_update(top_seq, [0, t + 1], ops.reshape(tokens, (-1, 1)))
        top_seq = ops.reshape(top_seq, (-1, 2 * k, width))
        ends = ops.equal(tokens, end_id)
        # At most k of the 2k candidates end (one per parent): k stay alive.
        alive_rank = ops.where(ends, 2.0 * neg_inf, top_scores)
        alive_scores, alive_positions = ops.top_k(alive_rank, k)
        alive_positions = ops.cast(alive_positions, "int32")
        alive_seq = _gather_beams(top_seq, alive_positions, 2 * k)
        if state:
            alive_parents = ops.take_along_axis(parents, alive_positions, axis=1)
            rows = ops.reshape(
                alive_parents
                + ops.arange(ops.shape(parents)[0], dtype="int32")[:, None] * k,
                (-1,),
            )
            state = keras.tree.map_structure(
                lambda cache: ops.take(cache, rows, axis=0), state
            )

        # Finished: end candidates ranked within the first k (those a width-k
        # beam holds, as in fairseq; with k = 1 this is greedy search), and
        # not the NEG_INF filler that tiny vocabularies produce at step 0.
        in_beam = ops.less(ops.arange(2 * k, dtype="int32"), k)[None]
        ends = ops.logical_and(ends, in_beam)
        ends = ops.logical_and(ends, ops.greater(top_scores, 0.5 * NEG_INF))
        normalized = top_scores / length_penalty(t + 1, alpha)
        merged_scores = ops.concatenate(
            [fin_scores, ops.where(ends, normalized, neg_inf)], axis=1
        )
        merged_flags = ops.concatenate([fin_flags, ends], axis=1)
        merged_seq = ops.concatenate([fin_seq, top_seq], axis=1)
        fin_scores, positions = ops.top_k(merged_scores, k)
        positions = ops.cast(positions, "int32")
        fin_flags = ops.take_along_axis(merged_flags, positions, axis=1)
        fin_seq = _gather_beams(merged_seq, positions, 3 * k)
        return t + 1, alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, state

    start = ops.reshape(_start_buffer(batch, max_length, start_id), (-1, 1, width))
    # All beams start identical: only the first one may expand at step 0.
    first = ops.concatenate(
        [ops.zeros((1,), "float32"), ops.full((k - 1,), NEG_INF, "float32")], axis=0
    )
    loop_vars = (
        ops.convert_to_tensor(0, dtype="int32"),
        ops.repeat(start, k, axis=1),
        ops.repeat(first[None], batch, axis=0),
        ops.repeat(start, k, axis=1),
        ops.full((batch, k), NEG_INF, "float32"),
        ops.zeros((batch, k), dtype="bool"),
        state,
    )
    t, alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, _ = ops.while_loop(
        cond, body, loop_vars, maximum_iterations=max_length
    )
    any_finished = ops.any(fin_flags, axis=1)
    tokens = ops.where(any_finished[:, None], fin_seq[:, 0], alive_seq[:, 0])
    scores = ops.where(
        any_finished,
        fin_scores[:, 0],
        alive_scores[:, 0] / length_penalty(t, alpha),
    )
    return tokens[:, 1:], scores
