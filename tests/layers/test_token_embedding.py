import keras
import numpy as np
from support.numerics import assert_config_round_trip, dtype_name, to_numpy

from keras_tfm.layers import TokenEmbedding


def test_lookup_is_scaled_by_sqrt_d_model():
    layer = TokenEmbedding(vocab_size=11, d_model=16)
    ids = np.array([[3, 0, 10, 3]], "int32")
    got = to_numpy(layer(ids))
    table = to_numpy(layer.embeddings)
    np.testing.assert_allclose(got[0], table[[3, 0, 10, 3]] * 4.0, rtol=1e-6)


def test_padding_mask():
    layer = TokenEmbedding(vocab_size=11, d_model=4)
    ids = np.array([[5, 6, 0, 0], [1, 0, 2, 0]], "int32")
    mask = to_numpy(layer.compute_mask(keras.ops.convert_to_tensor(ids)))
    np.testing.assert_array_equal(mask, ids != 0)
    assert layer.compute_mask(keras.ops.ones((1, 2, 4))) is None


def test_reverse_projection_uses_transposed_matrix_in_float32():
    layer = TokenEmbedding(vocab_size=7, d_model=4)
    layer.build()
    x = np.random.default_rng(1).normal(size=(2, 3, 4)).astype("float32")
    logits = layer(x, reverse=True)
    assert dtype_name(logits) == "float32"
    np.testing.assert_allclose(
        to_numpy(logits), x @ to_numpy(layer.embeddings).T, rtol=1e-5, atol=1e-6
    )


def test_mixed_precision_outputs():
    layer = TokenEmbedding(vocab_size=7, d_model=4, dtype="mixed_bfloat16")
    vectors = layer(np.array([[1, 2]], "int32"))
    assert dtype_name(vectors) == "bfloat16"
    assert dtype_name(layer(vectors, reverse=True)) == "float32"


def test_config_round_trip():
    assert_config_round_trip(
        TokenEmbedding(vocab_size=9, d_model=6, scale=False), np.array([[1, 8, 0]])
    )
