"""Beam search for `keras_tfm.generate` (`keras.ops` only).

tensor2tensor's formulation, with the GNMT length penalty: each step keeps
the `beam_size` best live hypotheses and a buffer of the `beam_size` best
finished ones, and an example stops as soon as no live beam can still beat
its finished ones. `generate`'s docstring gives the exact rules.
"""

import keras
from keras import ops

from keras_tfm.layers.scaled_dot_product_attention import MASK_FILL_VALUE
from keras_tfm.layers.token_embedding import PADDING_ID
from keras_tfm.token_buffers import exclude_padding, start_buffer, write_column


def length_penalty(length, alpha):
    """GNMT length penalty `((5 + length) / 6) ** alpha` (Wu et al., 2016).

    `length` may be a Python number or a tensor; the result is float32.
    """
    length = ops.cast(length, "float32")
    return ops.power((5.0 + length) / 6.0, float(alpha))


def gather_beams(values, indices, width):
    """`values` `(batch, width, ...)`, `indices` `(batch, k)` -> `(batch, k, ...)`."""
    batch = ops.shape(indices)[0]
    k = indices.shape[1]
    offsets = ops.arange(batch, dtype="int32")[:, None] * width
    flat_indices = ops.reshape(indices + offsets, (-1,))
    trailing = tuple(values.shape[2:])
    flat = ops.reshape(values, (-1,) + trailing)
    return ops.reshape(ops.take(flat, flat_indices, axis=0), (-1, k) + trailing)


def beam_search(
    step, state, batch, max_length, start_id, end_id, vocab, beam_size, alpha, empty
):
    """Beam search over `batch * beam_size` decoder rows.

    Args:
        step: `step(sequences, t, state) -> (logits, state)` as
            `generation.decoder_step` returns it, for `batch * beam_size` rows.
        state: its initial state (the self-attention caches, or empty).
        batch: the number of source sentences.
        max_length: the most tokens generated, end token included.
        start_id, end_id: the target's start and end tokens.
        vocab: the target vocabulary size.
        beam_size: beams per sentence.
        alpha: the length penalty's exponent.
        empty: bool `(batch,)`, sources of padding only: done from the
            start, returned as padding with score 0.

    Returns:
        `(tokens (batch, max_length) int32, scores (batch,) float32)`.
    """
    k = beam_size
    width = max_length + 1
    # Bound on the normalised score any live beam can still reach.
    max_penalty = length_penalty(max_length, alpha)
    neg_inf = ops.convert_to_tensor(MASK_FILL_VALUE, dtype="float32")

    def cond(t, alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, state):
        best_alive_bound = alive_scores[:, 0] / max_penalty
        worst_finished = ops.min(
            ops.where(fin_flags, fin_scores, -MASK_FILL_VALUE), axis=1
        )
        done = ops.logical_and(
            ops.any(fin_flags, axis=1),
            ops.greater(worst_finished, best_alive_bound),
        )
        done = ops.logical_or(done, empty)
        return ops.logical_and(ops.less(t, max_length), ops.logical_not(ops.all(done)))

    def body(t, alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, state):
        flat_seq = ops.reshape(alive_seq, (-1, width))
        logits, state = step(flat_seq, t, state)
        log_probs = exclude_padding(ops.log_softmax(logits, axis=-1))
        candidates = alive_scores[:, :, None] + ops.reshape(log_probs, (-1, k, vocab))
        top_scores, top_ids = ops.top_k(ops.reshape(candidates, (-1, k * vocab)), 2 * k)
        top_ids = ops.cast(top_ids, "int32")
        parents = top_ids // vocab
        tokens = top_ids % vocab
        top_seq = gather_beams(alive_seq, parents, k)  # (batch, 2k, width)
        top_seq = ops.reshape(top_seq, (-1, width))
        top_seq = write_column(top_seq, t + 1, ops.reshape(tokens, (-1,)))
        top_seq = ops.reshape(top_seq, (-1, 2 * k, width))
        ends = ops.equal(tokens, end_id)
        # At most k of the 2k candidates end (one per parent): k stay alive.
        alive_rank = ops.where(ends, 2.0 * neg_inf, top_scores)
        alive_scores, alive_positions = ops.top_k(alive_rank, k)
        alive_positions = ops.cast(alive_positions, "int32")
        alive_seq = gather_beams(top_seq, alive_positions, 2 * k)
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
        # not the MASK_FILL_VALUE filler that tiny vocabularies produce at step 0.
        in_beam = ops.less(ops.arange(2 * k, dtype="int32"), k)[None]
        ends = ops.logical_and(ends, in_beam)
        ends = ops.logical_and(ends, ops.greater(top_scores, 0.5 * MASK_FILL_VALUE))
        normalized = top_scores / length_penalty(t + 1, alpha)
        merged_scores = ops.concatenate(
            [fin_scores, ops.where(ends, normalized, neg_inf)], axis=1
        )
        merged_flags = ops.concatenate([fin_flags, ends], axis=1)
        merged_seq = ops.concatenate([fin_seq, top_seq], axis=1)
        fin_scores, positions = ops.top_k(merged_scores, k)
        positions = ops.cast(positions, "int32")
        fin_flags = ops.take_along_axis(merged_flags, positions, axis=1)
        fin_seq = gather_beams(merged_seq, positions, 3 * k)
        return t + 1, alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, state

    start = ops.reshape(start_buffer(batch, max_length, start_id), (-1, 1, width))
    # All beams start identical: only the first one may expand at step 0.
    first = ops.concatenate(
        [ops.zeros((1,), "float32"), ops.full((k - 1,), MASK_FILL_VALUE, "float32")],
        axis=0,
    )
    loop_vars = (
        ops.convert_to_tensor(0, dtype="int32"),
        ops.repeat(start, k, axis=1),
        ops.repeat(first[None], batch, axis=0),
        ops.repeat(start, k, axis=1),
        ops.full((batch, k), MASK_FILL_VALUE, "float32"),
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
    tokens = ops.where(empty[:, None], PADDING_ID, tokens)
    return tokens[:, 1:], ops.where(empty, 0.0, scores)
