"""`top_k` over a long last axis, through chunk maxima (`keras.ops` only).

TensorFlow's CPU `TopKV2` kernel scans its input one element at a time: on
a beam search's `(rows, vocabulary)` logits it costs as much as the output
projection that produced them, while a maximum over the same tensor runs
vectorised at a twentieth of that. So the row is cut into chunks, each
chunk's maximum taken, and the exact top k read from the k chunks with the
largest maxima: a chunk holding one of the k largest values has a maximum at
least that large, so at most k - 1 chunks can rank above it.
"""

from keras import ops

# Elements per chunk: large enough that the chunk maxima are few, small
# enough that k chunks are few candidates.
CHUNK = 64


def top_k(values, k, chunk=CHUNK):
    """The `k` largest entries of each row of `values` `(rows, n)`, largest
    first, and their int32 positions: what `keras.ops.top_k` returns.

    Equal values come out lower position first, as from `ops.top_k`: chunks
    are ranked by maximum, then position, so every chunk ranked above the
    one holding a chosen element holds an element ranked above it too.
    Rows shorter than `4 * k * chunk` go to `ops.top_k` directly.
    """
    n = values.shape[-1]
    if n is None or n < 4 * k * chunk:
        found, positions = ops.top_k(values, k)
        return found, ops.cast(positions, "int32")
    pad = -n % chunk
    if pad:
        lowest = ops.full((ops.shape(values)[0], pad), float("-inf"), values.dtype)
        values = ops.concatenate([values, lowest], axis=1)
    count = (n + pad) // chunk
    chunks = ops.reshape(values, (-1, count, chunk))
    _, best = ops.top_k(ops.max(chunks, axis=-1), k)
    # In position order, so that equal candidates keep the lower position
    # first, as `ops.top_k` would.
    best = ops.sort(ops.cast(best, "int32"), axis=-1)
    rows = ops.arange(ops.shape(best)[0], dtype="int32")[:, None]
    flat = ops.reshape(best + rows * count, (-1,))
    candidates = ops.take(ops.reshape(chunks, (-1, chunk)), flat, axis=0)
    found, at = ops.top_k(ops.reshape(candidates, (-1, k * chunk)), k)
    at = ops.cast(at, "int32")
    # Candidate `at` is element `at % chunk` of the `at // chunk`-th chunk.
    chunk_ids = ops.take_along_axis(best, at // chunk, axis=1)
    return found, chunk_ids * chunk + at % chunk
