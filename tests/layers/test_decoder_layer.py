import numpy as np
import pytest
from support import references
from support.numerics import assert_config_round_trip, to_numpy

from keras_tfm.layers import DecoderLayer


def randomize_norms(layer, seed):
    rng = np.random.default_rng(seed)
    for norm in (
        layer.self_attention_norm,
        layer.cross_attention_norm,
        layer.feed_forward_norm,
    ):
        norm.set_weights([rng.normal(1, 0.3, w.shape) for w in norm.get_weights()])


def example(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(2, 5, 16)).astype("float32")
    memory = rng.normal(size=(2, 7, 16)).astype("float32")
    target_padding = np.array([[1, 1, 1, 0, 0], [1] * 5], bool)
    source_padding = np.array([[1] * 7, [1, 1, 1, 1, 0, 0, 0]], bool)
    return y, memory, target_padding, source_padding


@pytest.mark.parametrize("pre_norm", [False, True])
def test_matches_numpy_reference(pre_norm):
    y, memory, target_padding, source_padding = example()
    layer = DecoderLayer(num_heads=4, d_ff=32, pre_norm=pre_norm)
    kwargs = dict(
        decoder_sequence_mask=target_padding, encoder_sequence_mask=source_padding
    )
    layer(y, memory, **kwargs)
    randomize_norms(layer, 1)
    got = to_numpy(layer(y, memory, **kwargs))
    expected = references.decoder_layer(
        layer,
        y.astype(np.float64),
        memory.astype(np.float64),
        target_padding,
        source_padding,
    )
    np.testing.assert_allclose(got[0, :3], expected[0, :3], atol=2e-5)
    np.testing.assert_allclose(got[1], expected[1], atol=2e-5)


def test_causal_self_attention():
    y, memory, _, _ = example(2)
    layer = DecoderLayer(num_heads=2, d_ff=32)
    base = to_numpy(layer(y, memory))
    changed = y.copy()
    changed[:, 3:] += 5.0
    after = to_numpy(layer(changed, memory))
    np.testing.assert_allclose(after[:, :3], base[:, :3], atol=1e-6)
    assert not np.allclose(after[:, 3:], base[:, 3:])


def test_cached_steps_equal_full_pass():
    y, memory, _, source_padding = example(3)
    layer = DecoderLayer(num_heads=4, d_ff=32, pre_norm=True)
    full = to_numpy(layer(y, memory, encoder_sequence_mask=source_padding))
    cache = layer.self_attention.initial_cache(2, 8, d_model=16)
    cross = layer.cross_attention.compute_cache(memory)
    outputs = []
    for t in range(5):
        out, cache, cross = layer(
            y[:, t : t + 1],
            None,
            encoder_sequence_mask=source_padding,
            self_attention_cache=cache,
            self_attention_cache_update_index=t,
            cross_attention_cache=cross,
        )
        outputs.append(to_numpy(out))
    np.testing.assert_allclose(np.concatenate(outputs, 1), full, atol=1e-5)


def test_config_round_trip():
    y, memory, _, _ = example(4)
    assert_config_round_trip(
        DecoderLayer(num_heads=2, d_ff=16, activation="gelu"), y, memory
    )
