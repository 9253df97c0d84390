"""NumPy float64 re-implementations of the layers, from a layer's weights.

Each follows the paper's equations, not keras_tfm's code: the attention of
section 3.2.1, multi-head attention (3.2.2), the feed-forward network
(3.3), the sinusoidal positions (3.5), and the residual blocks with their
layer normalisation, post-norm as in the paper or pre-norm.
"""

import numpy as np

from support.numerics import to_numpy


def weights(layer):
    return [np.asarray(to_numpy(w), np.float64) for w in layer.weights]


def reference_attention(q, k, v, mask=None):
    """float64 softmax(QK^T/sqrt(d))V on (b, t, h, d); masked rows -> 0."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        mask = np.broadcast_to(mask, scores.shape)
        scores = np.where(mask, scores, -np.inf)
    peak = np.max(scores, axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    weights = np.exp(scores - peak)
    total = weights.sum(-1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    return np.einsum("bhqk,bkhd->bqhd", weights, v), weights


def numpy_multi_head(layer, query, value, mask=None, key=None):
    """Equation of section 3.2.2 from the layer's own weights, in float64."""
    key = value if key is None else key
    w = {
        name: [np.asarray(to_numpy(v), np.float64) for v in sub.weights]
        for name, sub in [
            ("q", layer.query_dense),
            ("k", layer.key_dense),
            ("v", layer.value_dense),
            ("o", layer.output_dense),
        ]
    }
    q = np.einsum("btd,dhk->bthk", query, w["q"][0]) + w["q"][1]
    k = np.einsum("btd,dhk->bthk", key, w["k"][0]) + w["k"][1]
    v = np.einsum("btd,dhk->bthk", value, w["v"][0]) + w["v"][1]
    heads, _ = reference_attention(q, k, v, None if mask is None else mask[:, None])
    return np.einsum("bthk,hkd->btd", heads, w["o"][0]) + w["o"][1]


def positional_encoding(positions, depth):
    """PE(pos, 2i) = sin(pos / 10000^(2i/depth)), PE(pos, 2i+1) = cos(...),
    one row per position, written out element by element."""
    table = np.zeros((len(positions), depth))
    for row, pos in enumerate(positions):
        for i in range(depth // 2 + depth % 2):
            angle = pos / 10000 ** (2 * i / depth)
            table[row, 2 * i] = np.sin(angle)
            if 2 * i + 1 < depth:
                table[row, 2 * i + 1] = np.cos(angle)
    return table


def layer_norm(x, norm, epsilon):
    gamma, beta = weights(norm)
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def feed_forward(x, ffn):
    w1, b1 = weights(ffn.inner_dense)
    w2, b2 = weights(ffn.output_dense)
    return np.maximum(x @ w1 + b1, 0.0) @ w2 + b2


def block(x, sublayer, norm, pre_norm, epsilon):
    if pre_norm:
        return x + sublayer(layer_norm(x, norm, epsilon))
    return layer_norm(x + sublayer(x), norm, epsilon)


def encoder_layer(layer, x, padding, pre_norm=None, epsilon=None):
    """One encoder layer; `pre_norm` and `epsilon` default to the layer's."""
    pre_norm = layer.pre_norm if pre_norm is None else pre_norm
    eps = layer.layer_norm_epsilon if epsilon is None else epsilon
    mask = padding[:, None, :] & padding[:, :, None]
    x = block(
        x,
        lambda h: numpy_multi_head(layer.self_attention, h, h, mask),
        layer.self_attention_norm,
        pre_norm,
        eps,
    )
    return block(
        x,
        lambda h: feed_forward(h, layer.feed_forward),
        layer.feed_forward_norm,
        pre_norm,
        eps,
    )


def decoder_layer(
    layer, y, memory, target_padding, source_padding, pre_norm=None, epsilon=None
):
    """One decoder layer; `pre_norm` and `epsilon` default to the layer's."""
    pre_norm = layer.pre_norm if pre_norm is None else pre_norm
    eps = layer.layer_norm_epsilon if epsilon is None else epsilon
    t = y.shape[1]
    causal = np.tril(np.ones((t, t), bool))[None]
    self_mask = causal & target_padding[:, None, :] & target_padding[:, :, None]
    cross_mask = source_padding[:, None, :] & target_padding[:, :, None]
    y = block(
        y,
        lambda h: numpy_multi_head(layer.self_attention, h, h, self_mask),
        layer.self_attention_norm,
        pre_norm,
        eps,
    )
    y = block(
        y,
        lambda h: numpy_multi_head(layer.cross_attention, h, memory, cross_mask),
        layer.cross_attention_norm,
        pre_norm,
        eps,
    )
    return block(
        y,
        lambda h: feed_forward(h, layer.feed_forward),
        layer.feed_forward_norm,
        pre_norm,
        eps,
    )
