"""The decoder's token buffers, shared by greedy search, sampling and beam search.

`keras.ops` only.
"""

from keras import ops

from keras_tfm.constants import MASK_FILL_VALUE, PADDING_ID


def start_buffer(batch, max_length, start_id):
    """int32 `(batch, max_length + 1)`: `start_id`, then padding."""
    return ops.concatenate(
        [
            ops.full((batch, 1), start_id, dtype="int32"),
            ops.full((batch, max_length), PADDING_ID, dtype="int32"),
        ],
        axis=1,
    )


def write_column(buffer, column, values):
    """`buffer` `(rows, width)` with `values` `(rows,)` written at `column`.

    A select over the small token buffer rather than `ops.slice_update`,
    which Keras' TensorFlow backend writes as an XLA-only op.
    """
    width = ops.shape(buffer)[1]
    at_column = ops.equal(ops.arange(width, dtype="int32"), column)[None, :]
    return ops.where(at_column, ops.cast(values, buffer.dtype)[:, None], buffer)


def exclude_padding(logits):
    """Sets the logit (or log-probability) of the padding id to MASK_FILL_VALUE."""
    vocab = ops.shape(logits)[-1]
    is_pad = ops.equal(ops.arange(vocab, dtype="int32"), PADDING_ID)
    return ops.where(is_pad, ops.cast(MASK_FILL_VALUE, logits.dtype), logits)


def log_normalizer(logits):
    """`(rows,)`: log of the sum of `exp(logits)`, for a step's logits, in
    which padding is already excluded (`decoder_step`).

    Padding is never generated, so scores are log-probabilities under the
    distribution over the ids a search can choose. (Subtracting the padding
    term from the full sum instead would cancel catastrophically where a
    model puts most of its mass on padding.)
    """
    return ops.logsumexp(logits, axis=-1)


def forbid_before(logits, token, t, min_length):
    """`logits` with `token`'s set to MASK_FILL_VALUE while `t < min_length`."""
    if not min_length:
        return logits
    vocab = ops.shape(logits)[-1]
    hit = ops.logical_and(
        ops.equal(ops.arange(vocab, dtype="int32"), token), ops.less(t, min_length)
    )
    return ops.where(hit[None], ops.cast(MASK_FILL_VALUE, logits.dtype), logits)


def append_end(source_ids, end_id, max_length=None):
    """Right-padded `source_ids` with `end_id` after the last id of each
    non-empty row; one column wider, at most `max_length` (a full row's last
    id is replaced)."""
    source_ids = ops.cast(source_ids, "int32")
    lengths = ops.sum(ops.cast(ops.not_equal(source_ids, PADDING_ID), "int32"), axis=1)
    padded = ops.pad(source_ids, [[0, 0], [0, 1]], constant_values=PADDING_ID)
    if max_length is not None:
        padded = padded[:, :max_length]
        lengths = ops.minimum(lengths, max_length - 1)
    width = ops.shape(padded)[1]
    at_end = ops.logical_and(
        ops.equal(ops.arange(width, dtype="int32")[None], lengths[:, None]),
        ops.greater(lengths, 0)[:, None],
    )
    return ops.where(at_end, end_id, padded)


def write_rows(out_tokens, out_scores, ids, done, tokens, scores):
    """Writes the `tokens` and `scores` of the `done` rows at their `ids`
    rows of the outputs (searches that drop finished rows from the batch)."""
    where = ops.cast(ops.nonzero(done)[0], "int32")
    targets = ops.take(ids, where, axis=0)[:, None]
    out_tokens = ops.scatter_update(
        out_tokens, targets, ops.take(tokens, where, axis=0)
    )
    out_scores = ops.scatter_update(
        out_scores, targets, ops.take(scores, where, axis=0)
    )
    return out_tokens, out_scores
