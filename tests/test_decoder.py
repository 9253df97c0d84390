import numpy as np
from conftest import assert_config_round_trip, to_numpy

from keras_tfm.layers import Decoder


def example(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(2, 6, 16)).astype("float32")
    memory = rng.normal(size=(2, 5, 16)).astype("float32")
    source_padding = np.array([[1, 1, 1, 0, 0], [1] * 5], bool)
    return y, memory, source_padding


def test_equals_positional_encoding_then_layers():
    y, memory, source_padding = example()
    decoder = Decoder(num_layers=2, num_heads=4, d_ff=32)
    got = to_numpy(decoder(y, memory, encoder_sequence_mask=source_padding))
    x = decoder.positional_encoding(y)
    for layer in decoder.decoder_layers:
        x = layer(x, memory, encoder_sequence_mask=source_padding)
    np.testing.assert_allclose(got, to_numpy(x), atol=1e-6)


def test_cached_decoding_equals_full_pass():
    y, memory, source_padding = example(1)
    for pre_norm in (False, True):
        decoder = Decoder(num_layers=3, num_heads=4, d_ff=32, pre_norm=pre_norm)
        full = to_numpy(decoder(y, memory, encoder_sequence_mask=source_padding))
        cache = decoder.initial_self_attention_cache(2, 10)
        cross = decoder.compute_cross_attention_cache(memory)
        steps = []
        for t in range(6):
            out, cache, cross = decoder(
                y[:, t : t + 1],
                None,
                encoder_sequence_mask=source_padding,
                self_attention_cache=cache,
                self_attention_cache_update_index=t,
                cross_attention_cache=cross,
            )
            steps.append(to_numpy(out))
        np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-5)


def test_config_round_trip():
    y, memory, _ = example(2)
    assert_config_round_trip(
        Decoder(num_layers=2, num_heads=2, d_ff=16, pre_norm=True), y, memory
    )
