"""NumPy float64 re-implementations of the sublayers, from a layer's weights."""

import numpy as np
from conftest import to_numpy
from test_multi_head_attention import numpy_multi_head


def weights(layer):
    return [np.asarray(to_numpy(w), np.float64) for w in layer.weights]


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


def encoder_layer(layer, x, padding):
    eps = layer.layer_norm_epsilon
    mask = padding[:, None, :] & padding[:, :, None]
    x = block(
        x,
        lambda h: numpy_multi_head(layer.self_attention, h, h, mask),
        layer.self_attention_norm,
        layer.pre_norm,
        eps,
    )
    return block(
        x,
        lambda h: feed_forward(h, layer.feed_forward),
        layer.feed_forward_norm,
        layer.pre_norm,
        eps,
    )


def decoder_layer(layer, y, memory, target_padding, source_padding):
    eps = layer.layer_norm_epsilon
    t = y.shape[1]
    causal = np.tril(np.ones((t, t), bool))[None]
    self_mask = causal & target_padding[:, None, :] & target_padding[:, :, None]
    cross_mask = source_padding[:, None, :] & target_padding[:, :, None]
    y = block(
        y,
        lambda h: numpy_multi_head(layer.self_attention, h, h, self_mask),
        layer.self_attention_norm,
        layer.pre_norm,
        eps,
    )
    y = block(
        y,
        lambda h: numpy_multi_head(layer.cross_attention, h, memory, cross_mask),
        layer.cross_attention_norm,
        layer.pre_norm,
        eps,
    )
    return block(
        y,
        lambda h: feed_forward(h, layer.feed_forward),
        layer.feed_forward_norm,
        layer.pre_norm,
        eps,
    )
