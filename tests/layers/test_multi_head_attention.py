import keras
import numpy as np
import pytest
from support.numerics import assert_config_round_trip, to_numpy
from support.references import numpy_multi_head

from keras_tfm import TransformerConfig, build_transformer
from keras_tfm.layers import MultiHeadAttention, scaled_dot_product_attention
from keras_tfm.layers.multi_head_attention import write_cache


def inputs(seed, b=2, tq=5, tk=6, d=16):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(b, tq, d)).astype("float32"),
        rng.normal(size=(b, tk, d)).astype("float32"),
    )


def test_self_and_cross_attention_match_numpy_from_own_weights():
    query, memory = inputs(0)
    layer = MultiHeadAttention(num_heads=4)
    np.testing.assert_allclose(
        to_numpy(layer(query, memory)),
        numpy_multi_head(layer, query, memory),
        atol=1e-5,
    )
    self_layer = MultiHeadAttention(num_heads=2)
    np.testing.assert_allclose(
        to_numpy(self_layer(memory, memory)),
        numpy_multi_head(self_layer, memory, memory),
        atol=1e-5,
    )


def test_padding_and_causal_masks_match_numpy():
    query, _ = inputs(1, tq=6)
    padding = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    layer = MultiHeadAttention(num_heads=4)
    got = to_numpy(
        layer(
            query, query, query_mask=padding, value_mask=padding, use_causal_mask=True
        )
    )
    mask = (
        np.tril(np.ones((6, 6), bool))[None] & padding[:, None, :] & padding[:, :, None]
    )
    np.testing.assert_allclose(
        got, numpy_multi_head(layer, query, query, mask), atol=1e-5
    )


def copy_into_keras_layer(ours, theirs):
    for mine, other in [
        (ours.query_dense, theirs._query_dense),
        (ours.key_dense, theirs._key_dense),
        (ours.value_dense, theirs._value_dense),
        (ours.output_dense, theirs._output_dense),
    ]:
        other.set_weights(mine.get_weights())


def test_equals_keras_multi_head_attention_with_copied_weights():
    query, memory = inputs(2)
    ours = MultiHeadAttention(num_heads=4)
    ours(query, memory)
    theirs = keras.layers.MultiHeadAttention(num_heads=4, key_dim=4)
    theirs(query, memory)
    copy_into_keras_layer(ours, theirs)
    attention_mask = np.random.default_rng(3).random((2, 5, 6)) > 0.3
    attention_mask[:, :, 0] = True  # keras averages fully masked rows
    np.testing.assert_allclose(
        to_numpy(ours(query, memory, attention_mask=attention_mask)),
        to_numpy(theirs(query, memory, attention_mask=attention_mask)),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        to_numpy(ours(memory, memory, use_causal_mask=True)),
        to_numpy(theirs(memory, memory, use_causal_mask=True)),
        atol=1e-5,
    )


def test_incremental_self_attention_cache_equals_causal_attention():
    _, sequence = inputs(4, tk=7)
    layer = MultiHeadAttention(num_heads=4)
    full = to_numpy(layer(sequence, sequence, use_causal_mask=True))
    cache = layer.initial_cache(batch_size=2, max_length=9, d_model=16)
    steps = []
    for t in range(7):
        step = sequence[:, t : t + 1]
        out, cache = layer(step, step, cache=cache, cache_update_index=t)
        steps.append(to_numpy(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    # The cache now holds the projected keys and values of every position
    # written, heads first, and zeros after them.
    keys = to_numpy(layer.key_dense(sequence)).transpose(0, 2, 1, 3)
    values = to_numpy(layer.value_dense(sequence)).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(to_numpy(cache[0])[:, :, :7], keys, atol=1e-6)
    np.testing.assert_allclose(to_numpy(cache[1])[:, :, :7], values, atol=1e-6)
    np.testing.assert_array_equal(to_numpy(cache[0])[:, :, 7:], 0.0)


def test_growing_cache_equals_causal_attention():
    """Appending each step's keys and values to a cache that starts empty."""
    _, sequence = inputs(4, tk=7)
    layer = MultiHeadAttention(num_heads=4)
    full = to_numpy(layer(sequence, sequence, use_causal_mask=True))
    cache = layer.initial_cache(batch_size=2, max_length=0, d_model=16)
    steps = []
    for t in range(7):
        step = sequence[:, t : t + 1]
        out, cache = layer(
            step, step, cache=cache, cache_update_index=t, grow_cache=True
        )
        assert tuple(cache[0].shape) == (2, 4, t + 1, 4)
        steps.append(to_numpy(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    # Two positions at once: causal within them.
    cache = layer.initial_cache(batch_size=2, max_length=0, d_model=16)
    out, cache = layer(
        sequence[:, :3], sequence[:, :3], cache=cache, cache_update_index=0,
        grow_cache=True,
    )  # fmt: skip
    out2, _ = layer(
        sequence[:, 3:5], sequence[:, 3:5], cache=cache, cache_update_index=3,
        grow_cache=True,
    )  # fmt: skip
    np.testing.assert_allclose(to_numpy(out2), full[:, 3:5], atol=1e-5)


def test_precomputed_cross_attention_cache_equals_direct_call():
    query, memory = inputs(5)
    padding = np.array([[1, 1, 1, 0, 0, 0], [1] * 6], bool)
    layer = MultiHeadAttention(num_heads=2)
    direct = to_numpy(layer(query, memory, value_mask=padding))
    cache = layer.compute_cache(memory)
    cached, same_cache = layer(query, cache=cache, value_mask=padding)
    np.testing.assert_allclose(to_numpy(cached), direct, atol=1e-6)
    for mine, theirs in zip(same_cache, cache):
        np.testing.assert_array_equal(to_numpy(mine), to_numpy(theirs))


def test_rejects_indivisible_width():
    with pytest.raises(ValueError, match="num_heads=3"):
        MultiHeadAttention(num_heads=3)(np.zeros((1, 2, 16), "float32"))


def test_config_round_trip():
    query, memory = inputs(6)
    assert_config_round_trip(
        MultiHeadAttention(num_heads=4, use_bias=False), query, memory
    )


def test_cross_attention_with_keys_different_from_values():
    """Keys and values from different sequences: the key projection reads
    `key`, the value projection reads `value`; cached or not."""
    query, memory = inputs(7)
    _, keys = inputs(8)
    padding = np.array([[1, 1, 1, 1, 0, 0], [1] * 6], bool)
    layer = MultiHeadAttention(num_heads=4)
    got = to_numpy(layer(query, memory, key=keys, key_mask=padding))
    mask = np.broadcast_to(padding[:, None, :], (2, 5, 6))
    expected = numpy_multi_head(layer, query, memory, mask, key=keys)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Swapping the roles changes the result: neither input is ignored.
    swapped = numpy_multi_head(layer, query, keys, mask, key=memory)
    assert np.abs(swapped - expected).max() > 1e-2
    cache = layer.compute_cache(memory, key=keys)
    cached, _ = layer(query, cache=cache, key_mask=padding)
    np.testing.assert_allclose(to_numpy(cached), expected, atol=1e-5)


def test_attention_dropout_drops_weights_and_rescales_the_rest():
    """With values = identity the output is the (dropped) weight matrix."""
    rng = np.random.default_rng(9)
    # d_v = key length = d_k (JAX's fused kernel needs d_v == d_k).
    batch, length, rate = 100, 8, 0.3
    q = rng.normal(size=(batch, length, 1, length)).astype("float32")
    k = rng.normal(size=(batch, length, 1, length)).astype("float32")
    identity = np.broadcast_to(
        np.eye(length, dtype="float32")[None, :, None], (batch, length, 1, length)
    )
    seed = keras.random.SeedGenerator(0)
    dropped, weights = scaled_dot_product_attention(
        q, k, identity, dropout_rate=rate, training=True, seed_generator=seed,
        return_attention_scores=True,
    )  # fmt: skip
    dropped = to_numpy(dropped)[:, :, 0]  # (batch, query, key)
    weights = to_numpy(weights)[:, 0]
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], weights[kept] / (1 - rate), rtol=1e-5)
    # 6,400 weights: the share dropped is within 4 standard deviations of 0.3.
    share = 1 - kept.mean()
    assert abs(share - rate) < 4 * np.sqrt(rate * (1 - rate) / kept.size), share
    # Inference ignores the rate.
    plain = scaled_dot_product_attention(
        q, k, identity, dropout_rate=rate, training=False, seed_generator=seed
    )
    np.testing.assert_allclose(to_numpy(plain)[:, :, 0], weights, rtol=1e-6)


def test_attention_dropout_reaches_every_attention_of_the_model():
    config = TransformerConfig(
        src_vocab_size=20, tgt_vocab_size=20, d_model=16, num_heads=2, d_ff=32,
        num_encoder_layers=2, num_decoder_layers=2, dropout=0.0,
        attention_dropout=0.25, max_length=8,
    )  # fmt: skip
    model = build_transformer(config)
    attentions = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, MultiHeadAttention)
    ]
    assert len(attentions) == 6  # 2 encoder self, 2 decoder self, 2 cross
    assert {a.dropout for a in attentions} == {0.25}
    rng = np.random.default_rng(10)
    ids = {
        "source": rng.integers(3, 20, (2, 8)).astype("int32"),
        "target": rng.integers(3, 20, (2, 8)).astype("int32"),
    }
    # Residual dropout is 0: only attention dropout can make these differ.
    first, second = (to_numpy(model(ids, training=True)) for _ in range(2))
    assert np.abs(first - second).max() > 1e-3
    np.testing.assert_array_equal(
        to_numpy(model(ids, training=False)), to_numpy(model(ids, training=False))
    )


def test_write_cache_writes_keys_and_values_at_the_positions():
    rng = np.random.default_rng(11)
    cache = tuple(rng.normal(size=(3, 2, 9, 4)).astype("float32") for _ in "kv")
    # (batch, length 2, heads 2, key_dim 4), written heads first.
    keys = rng.normal(size=(3, 2, 2, 4)).astype("float32")
    values = rng.normal(size=(3, 2, 2, 4)).astype("float32")
    for start in (0, 4, 7):
        expected = [c.copy() for c in cache]
        expected[0][:, :, start : start + 2] = keys.transpose(0, 2, 1, 3)
        expected[1][:, :, start : start + 2] = values.transpose(0, 2, 1, 3)
        got = write_cache(cache, keras.ops.convert_to_tensor(start), keys, values)
        for mine, theirs in zip(got, expected):
            np.testing.assert_array_equal(to_numpy(mine), theirs)
