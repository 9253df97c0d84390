import numpy as np
import pytest
from support import references
from support.numerics import assert_config_round_trip, to_numpy

from keras_tfm.layers import EncoderLayer


def randomize_norms(layer, seed):
    # LayerNorm starts as identity scale/zero shift; random values make the
    # reference comparison sensitive to where each norm is applied.
    rng = np.random.default_rng(seed)
    for norm in (layer.self_attention_norm, layer.feed_forward_norm):
        norm.set_weights([rng.normal(1, 0.3, w.shape) for w in norm.get_weights()])


@pytest.mark.parametrize("pre_norm", [False, True])
def test_matches_numpy_reference(pre_norm):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 16)).astype("float32")
    padding = np.array([[1, 1, 1, 1, 0, 0], [1] * 6], bool)
    layer = EncoderLayer(num_heads=4, d_ff=32, pre_norm=pre_norm)
    layer(x, mask=padding)
    randomize_norms(layer, 1)
    got = to_numpy(layer(x, mask=padding))
    expected = references.encoder_layer(layer, x.astype(np.float64), padding)
    np.testing.assert_allclose(got[0, :4], expected[0, :4], atol=2e-5)
    np.testing.assert_allclose(got[1], expected[1], atol=2e-5)


def test_padding_does_not_change_real_positions():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 4, 16)).astype("float32")
    padded = np.concatenate([x, rng.normal(size=(1, 3, 16)).astype("float32")], 1)
    layer = EncoderLayer(num_heads=2, d_ff=32)
    short = to_numpy(layer(x, mask=np.ones((1, 4), bool)))
    long = to_numpy(layer(padded, mask=np.array([[1, 1, 1, 1, 0, 0, 0]], bool)))
    np.testing.assert_allclose(long[:, :4], short, atol=1e-5)


def test_dropout_only_in_training():
    x = np.random.default_rng(3).normal(size=(1, 4, 8)).astype("float32")
    layer = EncoderLayer(num_heads=2, d_ff=16, dropout=0.5)
    inference = to_numpy(layer(x))
    np.testing.assert_allclose(to_numpy(layer(x, training=False)), inference)
    assert not np.allclose(to_numpy(layer(x, training=True)), inference)


def test_config_round_trip():
    x = np.random.default_rng(4).normal(size=(1, 3, 8)).astype("float32")
    assert_config_round_trip(EncoderLayer(num_heads=2, d_ff=16, pre_norm=True), x)
