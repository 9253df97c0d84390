"""The decoder's token buffers, shared by greedy search, sampling and beam search.

`keras.ops` only.
"""

from keras import ops

from keras_tfm.layers.scaled_dot_product_attention import MASK_FILL_VALUE
from keras_tfm.layers.token_embedding import PADDING_ID


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
