"""softmax(Q K^T / sqrt(d_k)) V, with boolean masks that never produce NaN."""

import math

import keras
from keras import ops, random

from keras_tfm.constants import MASK_FILL_VALUE


def scaled_dot_product_attention(
    query,
    key,
    value,
    mask=None,
    dropout_rate=0.0,
    training=False,
    seed_generator=None,
    return_attention_scores=False,
    use_fused=None,
    heads_first=False,
    scale=None,
):
    """Scaled dot-product attention, equation (1) of the paper.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

    Args:
        query: `(batch, query_length, num_heads, d_k)`, or
            `(batch, query_length, d_k)` for a single head.
        key: `(batch, key_length, num_heads, d_k)` (same rank as query).
        value: `(batch, key_length, num_heads, d_v)` (same rank as query).
        mask: optional boolean tensor broadcastable to
            `(batch, num_heads, query_length, key_length)` (rank-4 inputs) or
            `(batch, query_length, key_length)` (rank-3 inputs). True means
            "may attend". A query row with no True entry gets all-zero
            attention weights and a zero output, never NaN.
        dropout_rate: dropout on the attention weights (0 in the paper).
        training: whether dropout is active.
        seed_generator: a `keras.random.SeedGenerator` for the dropout.
        return_attention_scores: also return the weights
            `(batch, num_heads, query_length, key_length)`.
        heads_first: `key` and `value` are `(batch, num_heads, key_length,
            d)` instead (the layout of `MultiHeadAttention`'s decoding
            caches: the products read them in place, with no transposed
            copy); `query` and the output keep theirs (rank 4 only).
        scale: what the scores are multiplied by; None (default) is
            `1 / sqrt(d_k)`. `MultiHeadAttention` folds `1 / sqrt(d_k)` into
            its query projection and passes 1.0, which skips a product over
            every score.
        use_fused: when nothing but the plain math is asked for (no weights
            returned, no active dropout), call `keras.ops.dot_product_attention`
            so backends can use their fused kernels. None (default) does so on
            backends that have such kernels (JAX, PyTorch); Keras' TensorFlow
            version is the same einsum math as the explicit path here, plus a
            full-size mask broadcast, so TensorFlow takes the explicit path.

    Returns:
        The attended values with the layout of `query` (last axis d_v), and
        the attention weights if `return_attention_scores`.

    Example:
    >>> q = k = v = keras.random.normal((2, 5, 4, 16))
    >>> out = scaled_dot_product_attention(q, k, v)  # (2, 5, 4, 16)
    """
    if heads_first:
        # The einsums read keys and values in this layout as they are; only
        # the queries and outputs (one position when decoding) move.
        return _attend(
            query, key, value, mask, dropout_rate, training, seed_generator,
            return_attention_scores, scale, heads_first=True,
        )  # fmt: skip
    single_head = len(query.shape) == 3
    if single_head:
        query = ops.expand_dims(query, 2)
        key = ops.expand_dims(key, 2)
        value = ops.expand_dims(value, 2)
        if mask is not None and len(mask.shape) == 3:
            mask = ops.expand_dims(mask, 1)
    if mask is not None:
        mask = ops.cast(mask, "bool")
        while len(mask.shape) < 4:
            mask = ops.expand_dims(mask, 0)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])

    dropout_active = bool(dropout_rate) and bool(training)
    if use_fused is None:
        use_fused = keras.config.backend() != "tensorflow"
    if use_fused and not return_attention_scores and not dropout_active:
        full_mask = None
        if mask is not None:
            batch, query_length, num_heads = ops.shape(query)[:3]
            key_length = ops.shape(key)[1]
            full_mask = ops.broadcast_to(
                mask, (batch, num_heads, query_length, key_length)
            )
        outputs = ops.dot_product_attention(
            query, key, value, mask=full_mask, scale=scale
        )
        if mask is not None:
            # Backends average over all keys in a fully masked row; we define
            # that row's output as zero instead.
            row_valid = ops.any(full_mask, axis=-1)  # (b, h, q)
            row_valid = ops.transpose(row_valid, (0, 2, 1))[..., None]
            outputs = outputs * ops.cast(row_valid, outputs.dtype)
        return ops.squeeze(outputs, 2) if single_head else outputs

    result = _attend(
        query, key, value, mask, dropout_rate, training, seed_generator,
        return_attention_scores, scale,
    )  # fmt: skip
    outputs, weights = result if return_attention_scores else (result, None)
    if single_head:
        outputs = ops.squeeze(outputs, 2)
    if return_attention_scores:
        return outputs, ops.squeeze(weights, 1) if single_head else weights
    return outputs


def _attend(
    query, key, value, mask, dropout_rate, training, seed_generator,
    return_attention_scores, scale=None, heads_first=False,
):  # fmt: skip
    """The explicit softmax(scale * Q K^T) V on rank-4 inputs.

    `query` is `(batch, q, heads, d)`; `key` and `value` are `(batch, k,
    heads, d)`, or `(batch, heads, k, d)` with `heads_first`. Returns
    `(batch, q, heads, d)` outputs (and the weights).
    """
    if mask is not None:
        mask = ops.cast(mask, "bool")
        while len(mask.shape) < 4:
            mask = ops.expand_dims(mask, 0)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    kv = "bhkd" if heads_first else "bkhd"
    one_query = heads_first and query.shape[1] == 1
    if one_query:
        # One decoding step: products and sums over the cache are cheaper
        # than batched matrix products of a single row.
        query_heads = ops.transpose(query, (0, 2, 1, 3))  # (b, h, 1, d)
        scores = ops.sum(query_heads * key, axis=-1)[:, :, None, :]
    else:
        scores = ops.einsum(f"bqhd,{kv}->bhqk", query, key)
    if scale != 1.0:
        scores = scores * ops.cast(scale, query.dtype)
    scores = ops.cast(scores, "float32")
    if mask is not None:
        # Added rather than selected: the bias has the mask's (broadcast)
        # shape, and the gradient passes through an addition unchanged.
        bias = ops.where(mask, 0.0, MASK_FILL_VALUE)
        scores = scores + bias
    if scores.shape[-1] == 1:
        # One key (the first decoding step): the weight is 1. Keras warns
        # about a softmax over an axis of size 1.
        weights = ops.ones_like(scores)
    else:
        weights = ops.softmax(scores, axis=-1)
    if mask is not None:
        row_valid = ops.any(mask, axis=-1, keepdims=True)
        weights = weights * ops.cast(row_valid, weights.dtype)
    weights = ops.cast(weights, query.dtype)
    attended_weights = weights
    if bool(dropout_rate) and bool(training):
        attended_weights = random.dropout(weights, dropout_rate, seed=seed_generator)
    if one_query:
        outputs = ops.sum(attended_weights[:, :, 0, :, None] * value, axis=2)
        outputs = outputs[:, None]  # (b, 1, h, d)
    else:
        outputs = ops.einsum(f"bhqk,{kv}->bqhd", attended_weights, value)
    if return_attention_scores:
        return outputs, weights
    return outputs
