import numpy as np
from support.numerics import assert_config_round_trip, dtype_name, to_numpy

from keras_tfm.layers import OutputLogits


def test_linear_projection():
    layer = OutputLogits(vocab_size=11)
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    logits = to_numpy(layer(x))
    kernel, bias = (to_numpy(w) for w in layer.weights)
    np.testing.assert_allclose(logits, x @ kernel + bias, rtol=1e-5, atol=1e-6)


def test_float32_logits_under_mixed_precision():
    layer = OutputLogits(vocab_size=11, dtype="mixed_bfloat16")
    x = np.random.default_rng(1).normal(size=(1, 2, 8)).astype("float32")
    logits = layer(x)
    assert dtype_name(logits) == "float32"
    kernel, bias = (to_numpy(w) for w in layer.weights)
    np.testing.assert_allclose(
        to_numpy(logits), x @ kernel + bias, rtol=0.05, atol=0.05
    )


def test_config_round_trip():
    x = np.ones((1, 2, 4), "float32")
    assert_config_round_trip(OutputLogits(vocab_size=5, use_bias=False), x)
