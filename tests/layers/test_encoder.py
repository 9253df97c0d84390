import numpy as np
from support import references
from support.numerics import assert_config_round_trip, to_numpy

from keras_tfm.layers import Encoder, TokenEmbedding


def randomize_norms(encoder, seed):
    # LayerNorm starts as identity scale/zero shift; random values make the
    # reference comparison sensitive to where each norm is applied.
    rng = np.random.default_rng(seed)
    norms = [encoder.final_norm] if encoder.final_norm is not None else []
    for layer in encoder.encoder_layers:
        norms += [layer.self_attention_norm, layer.feed_forward_norm]
    for norm in norms:
        norm.set_weights([rng.normal(1, 0.3, w.shape) for w in norm.get_weights()])


def numpy_encoder(encoder, x, padding, pre_norm, epsilon):
    """The stack in float64: x + PE (section 3.5), then each layer's NumPy
    reference, and under pre-norm a final LayerNorm."""
    x = np.asarray(x, np.float64)
    x = x + references.positional_encoding(range(x.shape[1]), x.shape[2])[None]
    for layer in encoder.encoder_layers:
        x = references.encoder_layer(layer, x, padding, pre_norm, epsilon)
    if pre_norm:
        x = references.layer_norm(x, encoder.final_norm, epsilon)
    return x


def test_equals_positional_encoding_then_layers():
    for pre_norm in (False, True):
        embed = TokenEmbedding(vocab_size=30, d_model=16)
        encoder = Encoder(
            num_layers=3, num_heads=4, d_ff=32, pre_norm=pre_norm,
            layer_norm_epsilon=1e-3,
        )  # fmt: skip
        ids = np.array([[4, 9, 2, 0, 0], [5, 6, 7, 8, 9]], "int32")
        padding = ids != 0
        vectors = embed(ids)
        encoder(vectors, mask=padding)
        randomize_norms(encoder, 1)
        got = to_numpy(encoder(vectors, mask=padding))
        expected = numpy_encoder(encoder, to_numpy(vectors), padding, pre_norm, 1e-3)
        # Padding positions are never read; their values are not specified.
        np.testing.assert_allclose(got[0, :3], expected[0, :3], atol=2e-5)
        np.testing.assert_allclose(got[1], expected[1], atol=2e-5)
        assert len(encoder.encoder_layers) == 3
        assert (encoder.final_norm is not None) is pre_norm


def test_keras_mask_from_embedding_is_used_and_padding_is_invisible():
    """Called with the embedding's output alone, the encoder takes the
    padding mask from the Keras mask the embedding attached: the real
    positions equal those of the unpadded sentence and the NumPy stack."""
    embed = TokenEmbedding(vocab_size=30, d_model=16)
    encoder = Encoder(num_layers=2, num_heads=2, d_ff=32)
    ids = np.array([[4, 9, 2, 0, 0, 0]], "int32")
    vectors = embed(ids)
    implicit = to_numpy(encoder(vectors))  # no mask argument
    short = to_numpy(encoder(embed(ids[:, :3])))
    np.testing.assert_allclose(implicit[:, :3], short, atol=1e-5)
    expected = numpy_encoder(encoder, to_numpy(vectors), ids != 0, False, 1e-6)
    np.testing.assert_allclose(implicit[:, :3], expected[:, :3], atol=2e-5)
    # The mask came with the tensor.
    np.testing.assert_array_equal(to_numpy(vectors._keras_mask), ids != 0)


def test_config_round_trip():
    x = np.random.default_rng(0).normal(size=(1, 4, 8)).astype("float32")
    assert_config_round_trip(
        Encoder(num_layers=2, num_heads=2, d_ff=16, max_length=32), x
    )
