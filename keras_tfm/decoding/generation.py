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

import keras

from keras_tfm.decoding.beam_search import length_penalty
from keras_tfm.decoding.compiled import compiled_generate, is_traced, make_generate_fn
from keras_tfm.decoding.decode import SETTING_DEFAULTS as _D
from keras_tfm.decoding.decode import decode, decoding_options, resolve

__all__ = ["generate", "length_penalty", "make_generate_fn"]


def generate(
    model,
    source_ids,
    options=None,
    *,
    start_id=_D["start_id"],
    end_id=_D["end_id"],
    max_length=None,
    method=None,
    beam_size=None,
    length_penalty=None,
    early_stopping=None,
    min_length=_D["min_length"],
    n_best=_D["n_best"],
    append_source_end=_D["append_source_end"],
    temperature=_D["temperature"],
    top_k=_D["top_k"],
    top_p=_D["top_p"],
    seed=_D["seed"],
    use_cache=_D["use_cache"],
    jit_compile=True,
    dynamic_shapes=None,
    step_weights=None,
):
    """Decodes target sequences for a batch of source sequences.

    Args:
        model: a `keras_tfm.models.Transformer` (what
            `keras_tfm.build_transformer` returns).
        source_ids: int tensor `(batch, source_length)`, right-padded with
            0. keras_tfm trains on sources that end with the end id
            (`Tokenizer.tokenize_source`); see `append_source_end`.
        start_id: the token that starts every decoder input (not returned).
            Default: `START_ID` (2), every keras_tfm tokenizer's start id.
        end_id: the end-of-sequence token; decoding of a sequence stops
            after it, and it is included in the output. Default: `END_ID`
            (3), every keras_tfm tokenizer's end id.
        options: `keras_tfm.DecodingOptions`: the search method, beams,
            length penalty and most tokens generated; default
            `DecodingOptions()`, the paper's beam search (4 beams, length
            penalty 0.6, up to the model's `max_length` tokens).
        method, beam_size, length_penalty, max_length, early_stopping:
            override the fields of `options` of the same names (None: keep
            them). `method` is
            "beam", "greedy" or "sample"; `max_length` is the most tokens
            generated per sequence, end token included, at most the
            model's.
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
        step_weights: the decoder's weights as the cached step reads them,
            `keras_tfm.decoding.fused_step.DecoderStepWeights(model,
            max_length)`, computed ahead (the SavedModel export keeps them
            as variables); None computes them in this call. Needs
            `jit_compile=False` (or a call inside a traced function).

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
        options=decoding_options(
            options,
            method=method,
            beam_size=beam_size,
            length_penalty=length_penalty,
            max_length=max_length,
            early_stopping=early_stopping,
        ),
        start_id=start_id,
        end_id=end_id,
        min_length=min_length,
        n_best=n_best,
        append_source_end=append_source_end,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        use_cache=use_cache,
    )
    resolve(model, settings)  # fails here, not inside a compiled function
    if jit_compile and not is_traced(source_ids):
        for name, value in (
            ("dynamic_shapes", dynamic_shapes),
            ("step_weights", step_weights),
        ):
            if value:
                raise ValueError(f"generate: {name} needs jit_compile=False")
        return compiled_generate(model, source_ids, settings)
    if dynamic_shapes is None:
        dynamic_shapes = not is_traced(source_ids)
    if dynamic_shapes and keras.config.backend() != "tensorflow":
        dynamic_shapes = False  # JAX traces every step with static shapes
    return decode(
        model,
        source_ids,
        dynamic_shapes=dynamic_shapes,
        step_weights=step_weights,
        **settings,
    )
