"""Greedy search for `keras_tfm.generate` (`keras.ops` only).

One token per sequence per step, the most likely one. `sequential_search`
(shared with sampling) runs with static shapes (XLA, `jax.jit`);
`compacting_greedy_search` drops each sequence from the batch when it ends
(shapes that change every step: TensorFlow graphs and eager execution).
"""

import keras
from keras import ops

from keras_tfm.constants import PADDING_ID
from keras_tfm.decoding.search import Search
from keras_tfm.decoding.token_buffers import (
    log_normalizer,
    start_buffer,
    write_column,
    write_rows,
)
from keras_tfm.decoding.top_k import top_k


class GreedySearch(Search):
    """The most likely token at every step (section 6.1 of the paper decodes
    with beams; greedy is the one-beam case without a length penalty).

    Scores are the total log-probability of the returned tokens.
    """

    method = "greedy"

    def __call__(self, inputs):
        choose = with_restriction(greedy_choice, inputs.restrict)
        search = compacting_greedy_search if inputs.compact else sequential_search
        tokens, scores = search(
            inputs.step,
            inputs.state,
            choose,
            inputs.batch,
            inputs.max_length,
            inputs.start_id,
            inputs.end_id,
            inputs.empty,
        )
        return tokens[:, None], scores[:, None]


def with_restriction(choose, restrict):
    """`choose(logits, t)` applied after `restrict(logits, t)` (if any)."""
    if restrict is None:
        return choose
    return lambda logits, t: choose(restrict(logits, t), t)


def greedy_choice(logits, t):
    # The first position of the largest logit, as an argmax gives it; Keras'
    # TensorFlow argmax adds four passes over the logits (for negative
    # zeros), the chunk maxima of `top_k` one.
    return top_k(logits, 1)[1][:, 0]


def sequential_search(step, state, choose, batch, max_length, start_id, end_id, empty):
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
        token_logits = ops.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0]
        token_log_probs = token_logits - log_normalizer(logits)
        tokens = ops.where(finished, PADDING_ID, tokens)
        scores = scores + ops.where(finished, 0.0, token_log_probs)
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


def compacting_greedy_search(
    step, state, choose, batch, max_length, start_id, end_id, empty
):
    """Greedy search that drops each sequence from the batch when it ends.

    `state` must hold every per-row tensor the step reads (`decoder_step`
    with `dynamic`); shapes change every step.
    """
    width = max_length + 1
    out_tokens = ops.full((batch, width), PADDING_ID, dtype="int32")
    out_scores = ops.zeros((batch,), dtype="float32")
    kept = ops.cast(ops.nonzero(ops.logical_not(empty))[0], "int32")
    sequences = ops.take(start_buffer(batch, max_length, start_id), kept, axis=0)
    scores = ops.zeros_like(ops.cast(kept, "float32"))
    state = keras.tree.map_structure(lambda x: ops.take(x, kept, axis=0), state)

    def cond(t, sequences, scores, state, ids, out_tokens, out_scores):
        return ops.logical_and(ops.less(t, max_length), ops.greater(ops.size(ids), 0))

    def body(t, sequences, scores, state, ids, out_tokens, out_scores):
        logits, state = step(sequences, t, state)
        tokens = choose(logits, t)
        token_logits = ops.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0]
        scores = scores + token_logits - log_normalizer(logits)
        sequences = write_column(sequences, t + 1, tokens)
        done = ops.logical_or(
            ops.equal(tokens, end_id), ops.greater_equal(t + 1, max_length)
        )
        out_tokens, out_scores = write_rows(
            out_tokens, out_scores, ids, done, sequences, scores
        )
        staying = ops.cast(ops.nonzero(ops.logical_not(done))[0], "int32")
        sequences, scores, ids = (
            ops.take(x, staying, axis=0) for x in (sequences, scores, ids)
        )
        state = ops.cond(
            ops.any(done),
            lambda: keras.tree.map_structure(
                lambda x: ops.take(x, staying, axis=0), state
            ),
            lambda: state,
        )
        return t + 1, sequences, scores, state, ids, out_tokens, out_scores

    *_, out_tokens, out_scores = ops.while_loop(
        cond,
        body,
        (
            ops.convert_to_tensor(0, "int32"),
            sequences,
            scores,
            state,
            kept,
            out_tokens,
            out_scores,
        ),
        maximum_iterations=max_length,
    )
    return out_tokens[:, 1:], out_scores
