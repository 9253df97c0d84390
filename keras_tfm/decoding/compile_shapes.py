"""The few input shapes compiled decoding sees.

Every new input shape traces (and under XLA compiles) the decoding again,
so batches are padded to a few shapes: rows to a power of two (at most
`max_rows`), lengths to a multiple of 16 tokens (at most the model's
limit). `generate`, evaluation and the SavedModel export all pad this way.
"""

from keras import ops

from keras_tfm.constants import PADDING_ID

LENGTH_MULTIPLE = 16


def padded_rows(rows, max_rows=None):
    """`rows` rounded up to a power of two (at most `max_rows`, if given)."""
    padded = 1 << max(rows - 1, 0).bit_length()
    return padded if max_rows is None else min(padded, max_rows)


def padded_length(length, limit):
    """`length` rounded up to a multiple of 16, at most `limit` (and never
    below `length` itself, nor below 1)."""
    length = max(length, 1)
    return max(length, min(-(-length // LENGTH_MULTIPLE) * LENGTH_MULTIPLE, limit))


def next_power_of_two(count):
    """`padded_rows` for an int tensor `count` whose value is not known when
    a graph is traced."""
    # Smear the highest set bit of count - 1 into every lower bit, then add
    # one.
    count = ops.maximum(count - 1, 0)
    for shift in (1, 2, 4, 8, 16):
        count = ops.bitwise_or(count, ops.right_shift(count, shift))
    return count + 1


def pad_to_compile_shape(ids, limit):
    """int `ids` `(rows, length)` tensor padded with `PADDING_ID` to
    `(padded_rows(rows), padded_length(length, limit))`, inside a graph
    whose shapes are not known when it is traced."""
    rows, length = ops.shape(ids)[0], ops.shape(ids)[1]
    bucket_rows = next_power_of_two(rows)
    multiple = (length + LENGTH_MULTIPLE - 1) // LENGTH_MULTIPLE * LENGTH_MULTIPLE
    bucket_length = ops.maximum(length, ops.minimum(multiple, limit))
    return ops.pad(
        ids,
        [[0, bucket_rows - rows], [0, bucket_length - length]],
        constant_values=PADDING_ID,
    )
