import numpy as np
from support import references
from support.numerics import assert_config_round_trip, to_numpy

from keras_tfm.layers import Decoder


def example(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(2, 6, 16)).astype("float32")
    memory = rng.normal(size=(2, 5, 16)).astype("float32")
    source_padding = np.array([[1, 1, 1, 0, 0], [1] * 5], bool)
    return y, memory, source_padding


def randomize_norms(decoder, seed):
    # LayerNorm starts as identity scale/zero shift; random values make the
    # reference comparison sensitive to where each norm is applied.
    rng = np.random.default_rng(seed)
    norms = [decoder.final_norm] if decoder.final_norm is not None else []
    for layer in decoder.decoder_layers:
        norms += [
            layer.self_attention_norm,
            layer.cross_attention_norm,
            layer.feed_forward_norm,
        ]
    for norm in norms:
        norm.set_weights([rng.normal(1, 0.3, w.shape) for w in norm.get_weights()])


def numpy_decoder(decoder, y, memory, target_padding, source_padding, pre_norm, eps):
    """The stack in float64: y + PE (section 3.5), then each layer's NumPy
    reference, and under pre-norm a final LayerNorm."""
    y = np.asarray(y, np.float64)
    memory = np.asarray(memory, np.float64)
    y = y + references.positional_encoding(range(y.shape[1]), y.shape[2])[None]
    for layer in decoder.decoder_layers:
        y = references.decoder_layer(
            layer, y, memory, target_padding, source_padding, pre_norm, eps
        )
    if pre_norm:
        y = references.layer_norm(y, decoder.final_norm, eps)
    return y


def test_equals_positional_encoding_then_layers():
    y, memory, source_padding = example()
    target_padding = np.array([[1, 1, 1, 1, 0, 0], [1] * 6], bool)
    for pre_norm in (False, True):
        decoder = Decoder(
            num_layers=2, num_heads=4, d_ff=32, pre_norm=pre_norm,
            layer_norm_epsilon=1e-3,
        )  # fmt: skip
        masks = dict(
            decoder_sequence_mask=target_padding,
            encoder_sequence_mask=source_padding,
        )
        decoder(y, memory, **masks)
        randomize_norms(decoder, 3)
        got = to_numpy(decoder(y, memory, **masks))
        expected = numpy_decoder(
            decoder, y, memory, target_padding, source_padding, pre_norm, 1e-3
        )
        # Padding positions are never read; their values are not specified.
        np.testing.assert_allclose(got[0, :4], expected[0, :4], atol=2e-5)
        np.testing.assert_allclose(got[1], expected[1], atol=2e-5)
        assert (decoder.final_norm is not None) is pre_norm


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


def test_cross_attention_weights():
    """Per layer, `(batch, heads, target, source)`: the weights each
    decoder layer returns on the way, rows summing to 1 over the source
    positions that are not padding, 0 on padding; the outputs unchanged."""
    import pytest

    y, memory, source_padding = example(2)
    for pre_norm in (False, True):
        decoder = Decoder(num_layers=2, num_heads=4, d_ff=32, pre_norm=pre_norm)
        plain = to_numpy(decoder(y, memory, encoder_sequence_mask=source_padding))
        out, weights = decoder(
            y,
            memory,
            encoder_sequence_mask=source_padding,
            return_attention_scores=True,
        )
        np.testing.assert_allclose(to_numpy(out), plain, atol=1e-6)
        assert len(weights) == 2
        x = decoder.positional_encoding(y)
        for layer, got in zip(decoder.decoder_layers, weights):
            got = to_numpy(got)
            assert got.shape == (2, 4, 6, 5)
            x, expected = layer(
                x, memory, encoder_sequence_mask=source_padding,
                return_attention_scores=True,
            )  # fmt: skip
            np.testing.assert_allclose(got, to_numpy(expected), atol=1e-6)
            np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
            np.testing.assert_array_equal(got[0, :, :, 3:], 0.0)
            assert got[0, :, :, :3].min() > 0
    cache = decoder.initial_self_attention_cache(2, 10)
    with pytest.raises(ValueError, match="without caches"):
        decoder(
            y[:, :1], memory, encoder_sequence_mask=source_padding,
            self_attention_cache=cache, self_attention_cache_update_index=0,
            return_attention_scores=True,
        )  # fmt: skip
