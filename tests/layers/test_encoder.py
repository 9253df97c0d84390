import numpy as np
from support.numerics import assert_config_round_trip, to_numpy

from keras_tfm.layers import Encoder, TokenEmbedding


def test_equals_positional_encoding_then_layers():
    embed = TokenEmbedding(vocab_size=30, d_model=16)
    encoder = Encoder(num_layers=3, num_heads=4, d_ff=32, pre_norm=True)
    ids = np.array([[4, 9, 2, 0, 0], [5, 6, 7, 8, 9]], "int32")
    vectors = embed(ids)
    got = to_numpy(encoder(vectors, mask=ids != 0))
    x = encoder.positional_encoding(vectors)
    for layer in encoder.encoder_layers:
        x = layer(x, mask=ids != 0)
    x = to_numpy(encoder.final_norm(x))
    np.testing.assert_allclose(got, x, atol=1e-6)
    assert len(encoder.encoder_layers) == 3


def test_keras_mask_from_embedding_is_used_and_padding_is_invisible():
    embed = TokenEmbedding(vocab_size=30, d_model=16)
    encoder = Encoder(num_layers=2, num_heads=2, d_ff=32)
    short = to_numpy(encoder(embed(np.array([[4, 9, 2]], "int32"))))
    ids = np.array([[4, 9, 2, 0, 0, 0]], "int32")
    explicit = to_numpy(encoder(embed(ids), mask=ids != 0))
    np.testing.assert_allclose(explicit[:, :3], short, atol=1e-5)


def test_config_round_trip():
    x = np.random.default_rng(0).normal(size=(1, 4, 8)).astype("float32")
    assert_config_round_trip(
        Encoder(num_layers=2, num_heads=2, d_ff=16, max_length=32), x
    )
