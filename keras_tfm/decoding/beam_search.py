"""Beam search for `keras_tfm.generate` (`keras.ops` only).

tensor2tensor's formulation, with the GNMT length penalty: each step keeps
the `beam_size` best live hypotheses and a buffer of the `beam_size` best
finished ones, and an example stops as soon as no live beam can still beat
its best finished one. `generate`'s docstring gives the exact rules.

Two loops run the same step: one with static shapes (for XLA and
`jax.jit`), and one that drops finished examples from the batch as it goes
(`compact=True`: shapes change every step, for TensorFlow graphs and eager
execution), so that a batch costs what its sentences cost, not what its
longest one does.
"""

import keras
from keras import ops

from keras_tfm.constants import MASK_FILL_VALUE, PADDING_ID
from keras_tfm.decoding.search import Search
from keras_tfm.decoding.token_buffers import (
    start_buffer,
    write_column,
    write_rows,
)
from keras_tfm.decoding.top_k import top_k


class BeamSearch(Search):
    """Beam search with the GNMT length penalty (section 6.1 of the paper:
    4 beams, alpha = 0.6); `keras_tfm.generate`'s docstring gives the rules.

    Args:
        beam_size: beams per sentence.
        length_penalty: alpha of `((5 + length) / 6) ** alpha`, which
            scores are divided by.
        early_stopping: stop a sentence when its best candidate ends
            (`DecodingOptions.early_stopping`).

    Scores are the total log-probability divided by the length penalty.
    """

    method = "beam"

    def __init__(self, beam_size=4, length_penalty=0.6, early_stopping=False):
        self.beam_size, self.length_penalty = beam_size, length_penalty
        self.early_stopping = early_stopping

    @classmethod
    def from_options(cls, options, *, temperature, top_k, top_p, seed):
        return cls(options.beam_size, options.length_penalty, options.early_stopping)

    @property
    def rows_per_sentence(self):
        return self.beam_size

    def __call__(self, inputs):
        return beam_search(
            inputs.step,
            inputs.state,
            inputs.batch,
            inputs.max_length,
            inputs.start_id,
            inputs.end_id,
            inputs.vocab,
            self.beam_size,
            self.length_penalty,
            inputs.empty,
            compact=inputs.compact,
            n_best=inputs.n_best,
            restrict=inputs.restrict,
            early_stopping=self.early_stopping,
        )


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
    step,
    state,
    batch,
    max_length,
    start_id,
    end_id,
    vocab,
    beam_size,
    alpha,
    empty,
    compact=False,
    n_best=1,
    restrict=None,
    early_stopping=False,
):
    """Beam search over `batch * beam_size` decoder rows.

    Args:
        step: `step(sequences, t, state) -> (logits, state)` as
            `generation.decoder_step` returns it, for `batch * beam_size` rows.
        state: its initial state, a tuple: first the self-attention caches,
            whose first axis is the `batch * beam_size` rows, then entries
            with one item per example (`fused_decoder_step`), or empty.
        batch: the number of source sentences.
        max_length: the most tokens generated, end token included.
        start_id, end_id: the target's start and end tokens.
        vocab: the target vocabulary size.
        beam_size: beams per sentence.
        alpha: the length penalty's exponent.
        empty: bool `(batch,)`, sources of padding only: done from the
            start, returned as padding with score 0.
        compact: drop examples from the batch (and their rows from `state`)
            as soon as they are done; needs shapes that may change
            (`decoder_step` with `dynamic`).
        n_best: hypotheses returned per example (<= beam_size), best first:
            the finished ones, then live ones where fewer finished.
        restrict: `restrict(logits, t) -> logits` applied before ranking
            candidates (not to the scores), e.g. to forbid the end id.
        early_stopping: an example is also done once its best candidate
            of a step ends and `n_best` hypotheses have finished.

    Returns:
        `(tokens (batch, n_best, max_length) int32,
        scores (batch, n_best) float32)`.
    """
    search = _Search(
        step, max_length, end_id, vocab, beam_size, alpha, n_best, restrict,
        early_stopping,
    )  # fmt: skip
    k = beam_size
    width = max_length + 1
    start = ops.reshape(start_buffer(batch, max_length, start_id), (-1, 1, width))
    # All beams start identical: only the first one may expand at step 0.
    first = ops.concatenate(
        [ops.zeros((1,), "float32"), ops.full((k - 1,), MASK_FILL_VALUE, "float32")],
        axis=0,
    )
    beams = (
        ops.repeat(start, k, axis=1),
        ops.repeat(first[None], batch, axis=0),
        ops.repeat(start, k, axis=1),
        ops.full((batch, k), MASK_FILL_VALUE, "float32"),
        ops.zeros((batch, k), dtype="bool"),
        ops.zeros((batch,), dtype="bool"),  # has the best candidate ended
    )
    zero = ops.convert_to_tensor(0, dtype="int32")
    if not compact:

        def cond(t, beams, state):
            done = ops.logical_or(search.done(*beams), empty)
            return ops.logical_and(
                ops.less(t, max_length), ops.logical_not(ops.all(done))
            )

        def body(t, beams, state):
            extended, state, rows = search.extend(t, beams, state)
            if early_stopping:
                done = search.done(*beams)
                # A done example stays in the batch here, and its finished
                # buffer could still change: keep it as it was when done.
                extended = tuple(
                    ops.where(
                        ops.reshape(done, (-1,) + (1,) * (len(b.shape) - 1)), b, e
                    )
                    for b, e in zip(beams, extended)
                )
            return t + 1, extended, _follow_beams(state, rows)

        t, beams, _ = ops.while_loop(
            cond, body, (zero, beams, state), maximum_iterations=max_length
        )
        tokens, scores = search.best(t, beams)
        tokens = ops.where(empty[:, None, None], PADDING_ID, tokens)
        return tokens[:, :, 1:], ops.where(empty[:, None], 0.0, scores)

    # Examples leave the batch when done; `ids` maps the rows left to their
    # place in the output, written as each one leaves.
    out_tokens = ops.full((batch, n_best, width), PADDING_ID, dtype="int32")
    out_scores = ops.zeros((batch, n_best), dtype="float32")
    keep = ops.logical_not(empty)
    ids = ops.arange(batch, dtype="int32")
    beams, state, ids = _keep(keep, beams, state, ids, k)

    def cond(t, beams, state, ids, out_tokens, out_scores):
        return ops.logical_and(ops.less(t, max_length), ops.greater(ops.size(ids), 0))

    def body(t, beams, state, ids, out_tokens, out_scores):
        beams, state, rows = search.extend(t, beams, state)
        done = ops.logical_or(search.done(*beams), ops.greater_equal(t + 1, max_length))
        tokens, scores = search.best(t + 1, beams)
        out_tokens, out_scores = write_rows(
            out_tokens, out_scores, ids, done, tokens, scores
        )
        kept = ops.cast(ops.nonzero(ops.logical_not(done))[0], "int32")
        kept_rows = _example_rows(kept, k)
        beams = tuple(ops.take(b, kept, axis=0) for b in beams)
        # The self-attention caches follow the beams: reordered by parent,
        # then compacted, in one gather. The rest (the encoder's keys, values
        # and padding bias) has one entry per example: gathered only when an
        # example leaves.
        caches = _take_rows(state[0], ops.take(rows, kept_rows, axis=0))
        rest = ops.cond(
            ops.any(done),
            lambda: _take_rows(state[1:], kept),
            lambda: state[1:],
        )
        state = (caches,) + tuple(rest)
        return t + 1, beams, state, ops.take(ids, kept, axis=0), out_tokens, out_scores

    *_, out_tokens, out_scores = ops.while_loop(
        cond,
        body,
        (zero, beams, state, ids, out_tokens, out_scores),
        maximum_iterations=max_length,
    )
    return out_tokens[:, :, 1:], out_scores


class _Search:
    """One beam search step and its stopping rule (shared by both loops)."""

    def __init__(
        self, step, max_length, end_id, vocab, beam_size, alpha, n_best, restrict,
        early_stopping,
    ):  # fmt: skip
        self.step, self.end_id, self.vocab = step, end_id, vocab
        self.early_stopping = early_stopping
        self.k, self.alpha, self.width = beam_size, alpha, max_length + 1
        self.n_best = n_best
        self.restrict = restrict or (lambda logits, t: logits)
        # Bound on the normalised score any live beam can still reach.
        self.max_penalty = length_penalty(max_length, alpha)

    def done(self, alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, top_ended):
        """Examples whose `n_best`-th best finished hypothesis beats any live
        beam's best reachable score (the returned ones can no longer change),
        and with `early_stopping` those whose best candidate has ended."""
        best_alive_bound = alive_scores[:, 0] / self.max_penalty
        last = self.n_best - 1
        settled = ops.greater(fin_scores[:, last], best_alive_bound)
        if self.early_stopping:
            settled = ops.logical_or(settled, top_ended)
        return ops.logical_and(fin_flags[:, last], settled)

    def extend(self, t, beams, state):
        """Step `t`: returns the new beams, the step's new state and the
        decoder rows to keep, in order (each new live beam's parent row)."""
        alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, top_ended = beams
        k, width = self.k, self.width
        neg_inf = ops.convert_to_tensor(MASK_FILL_VALUE, dtype="float32")
        logits, state = self.step(ops.reshape(alive_seq, (-1, width)), t, state)
        # The 2k best extensions of an example are among the 2k best of each
        # of its beams: rank each beam's tokens, then those k * 2k. Scores
        # are log-probabilities over every id but padding (which the step
        # excludes), without a log-softmax over the whole vocabulary.
        per_beam = min(2 * k, self.vocab)
        normalizer = ops.logsumexp(logits, axis=-1)
        row_logits, row_tokens = top_k(self.restrict(logits, t), per_beam)
        row_scores = row_logits - normalizer[:, None]
        candidates = alive_scores[:, :, None] + ops.reshape(
            row_scores, (-1, k, per_beam)
        )
        top_scores, top_ids = ops.top_k(
            ops.reshape(candidates, (-1, k * per_beam)), 2 * k
        )
        top_ids = ops.cast(top_ids, "int32")
        parents = top_ids // per_beam
        tokens = ops.take_along_axis(
            ops.reshape(ops.cast(row_tokens, "int32"), (-1, k * per_beam)),
            top_ids,
            axis=1,
        )
        top_seq = gather_beams(alive_seq, parents, k)  # (batch, 2k, width)
        top_seq = ops.reshape(top_seq, (-1, width))
        top_seq = write_column(top_seq, t + 1, ops.reshape(tokens, (-1,)))
        top_seq = ops.reshape(top_seq, (-1, 2 * k, width))
        ends = ops.equal(tokens, self.end_id)
        # At most k of the 2k candidates end (one per parent): k stay alive.
        alive_rank = ops.where(ends, 2.0 * neg_inf, top_scores)
        alive_scores, alive_positions = ops.top_k(alive_rank, k)
        alive_positions = ops.cast(alive_positions, "int32")
        alive_seq = gather_beams(top_seq, alive_positions, 2 * k)
        alive_parents = ops.take_along_axis(parents, alive_positions, axis=1)
        rows = ops.reshape(
            alive_parents
            + ops.arange(ops.shape(parents)[0], dtype="int32")[:, None] * k,
            (-1,),
        )
        # Finished: end candidates ranked within the first k (those a width-k
        # beam holds, as in fairseq; with k = 1 this is greedy search), and
        # not the filler that tiny vocabularies produce at step 0.
        in_beam = ops.less(ops.arange(2 * k, dtype="int32"), k)[None]
        ends = ops.logical_and(ends, in_beam)
        ends = ops.logical_and(ends, ops.greater(top_scores, 0.5 * MASK_FILL_VALUE))
        normalized = top_scores / length_penalty(t + 1, self.alpha)
        merged_scores = ops.concatenate(
            [fin_scores, ops.where(ends, normalized, neg_inf)], axis=1
        )
        merged_flags = ops.concatenate([fin_flags, ends], axis=1)
        merged_seq = ops.concatenate([fin_seq, top_seq], axis=1)
        fin_scores, positions = ops.top_k(merged_scores, k)
        positions = ops.cast(positions, "int32")
        fin_flags = ops.take_along_axis(merged_flags, positions, axis=1)
        fin_seq = gather_beams(merged_seq, positions, 3 * k)
        if self.early_stopping:  # the step's best candidate ends
            top_ended = ops.logical_or(top_ended, ends[:, 0])
        beams = (alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, top_ended)
        return beams, state, rows

    def best(self, t, beams):
        """The `n_best` best hypotheses per example after `t` steps, `(batch,
        n_best, width)` with the buffer's column 0, and their scores: the
        finished ones by score, then the live ones (normalised with the
        penalty of their length) where fewer finished."""
        alive_seq, alive_scores, fin_seq, fin_scores, fin_flags, _ = beams
        # Both buffers are sorted and the finished flags come first.
        finished = ops.sum(ops.cast(fin_flags, "int32"), axis=1)[:, None]
        rank = ops.arange(self.n_best, dtype="int32")[None]
        positions = ops.where(ops.less(rank, finished), rank, self.k + rank - finished)
        sequences = ops.concatenate([fin_seq, alive_seq], axis=1)
        scores = ops.concatenate(
            [fin_scores, alive_scores / length_penalty(t, self.alpha)], axis=1
        )
        return (
            gather_beams(sequences, positions, 2 * self.k),
            ops.take_along_axis(scores, positions, axis=1),
        )


def _follow_beams(state, rows):
    # Only the caches follow the beams; the rest is per example.
    if not state:
        return state
    return (_take_rows(state[0], rows),) + tuple(state[1:])


def _take_rows(state, rows):
    # The step's new state (caches written this step) in the new beam order.
    return keras.tree.map_structure(lambda x: ops.take(x, rows, axis=0), state)


def _example_rows(examples, k):
    """The decoder rows `(example * k + beam)` of `examples`."""
    return ops.reshape(
        examples[:, None] * k + ops.arange(k, dtype="int32")[None], (-1,)
    )


def _keep(keep, beams, state, ids, k):
    """Only the examples where `keep`: their beams, decoder rows and ids."""
    kept = ops.cast(ops.nonzero(keep)[0], "int32")
    beams = tuple(ops.take(b, kept, axis=0) for b in beams)
    state = (_take_rows(state[0], _example_rows(kept, k)),) + _take_rows(
        tuple(state[1:]), kept
    )
    return beams, state, ops.take(ids, kept, axis=0)
