from math import erf, sqrt

import numpy as np
from support.numerics import assert_config_round_trip, to_numpy

from keras_tfm.layers import PositionwiseFeedForward


def test_matches_equation_two():
    layer = PositionwiseFeedForward(d_ff=32)
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    got = to_numpy(layer(x))
    w1, b1 = (to_numpy(w) for w in layer.inner_dense.weights)
    w2, b2 = (to_numpy(w) for w in layer.output_dense.weights)
    expected = np.maximum(x @ w1 + b1, 0.0) @ w2 + b2
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_activation_is_configurable_and_dropout_only_in_training():
    layer = PositionwiseFeedForward(d_ff=16, activation="gelu", dropout=0.5)
    x = np.random.default_rng(1).normal(size=(1, 4, 8)).astype("float32")
    inference = to_numpy(layer(x, training=False))
    w1, b1 = (to_numpy(w) for w in layer.inner_dense.weights)
    w2, b2 = (to_numpy(w) for w in layer.output_dense.weights)
    hidden = x @ w1 + b1
    gelu = hidden * 0.5 * (1 + np.vectorize(erf)(hidden / sqrt(2)))
    np.testing.assert_allclose(inference, gelu @ w2 + b2, rtol=1e-4, atol=1e-5)
    assert not np.allclose(to_numpy(layer(x, training=True)), inference)


def test_config_round_trip():
    x = np.ones((1, 2, 4), "float32")
    assert_config_round_trip(PositionwiseFeedForward(d_ff=8, activation="gelu"), x)
