import keras
import numpy as np
import pytest
from support.numerics import assert_config_round_trip, dtype_name, to_numpy

from keras_tfm.layers import Dropout


def positive_inputs(shape=(8, 50, 64), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, size=shape).astype("float32")


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_keeps_with_probability_one_minus_rate_and_rescales(rate):
    x = positive_inputs()
    y = to_numpy(Dropout(rate, seed=1)(x, training=True))
    kept = y != 0
    # Every kept element is exactly x / (1 - rate), in float32.
    np.testing.assert_array_equal(y[kept], (x * np.float32(1.0 / (1.0 - rate)))[kept])
    # The dropped fraction is a binomial proportion over 25,600 draws:
    # within five standard deviations of the rate.
    n = x.size
    assert abs((1 - kept.mean()) - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
    # Unbiased: the mean is kept (1 / (1 - rate) makes up for the drops).
    np.testing.assert_allclose(y.mean(), x.mean(), rtol=0.02)


def test_identity_unless_training_and_edge_rates():
    x = positive_inputs((4, 6, 8))
    np.testing.assert_array_equal(to_numpy(Dropout(0.5)(x)), x)
    np.testing.assert_array_equal(to_numpy(Dropout(0.0)(x, training=True)), x)
    np.testing.assert_array_equal(
        to_numpy(Dropout(1.0)(x, training=True)), np.zeros_like(x)
    )


def test_masks_differ_between_calls_and_repeat_with_the_seed():
    x = positive_inputs((4, 6, 8))
    first, second = Dropout(0.5, seed=3), Dropout(0.5, seed=3)
    a, b = (to_numpy(first(x, training=True)) for _ in range(2))
    assert not np.array_equal(a != 0, b != 0)
    np.testing.assert_array_equal(to_numpy(second(x, training=True)), a)


def test_noise_shape_broadcasts_one_mask():
    x = positive_inputs((4, 6, 8))
    y = to_numpy(Dropout(0.5, noise_shape=(None, 1, 8), seed=2)(x, training=True))
    kept = y != 0
    # One decision per (batch, feature), the same at every position.
    assert np.all(kept == kept[:, :1, :])
    assert 0 < kept.mean() < 1


def test_bfloat16_policy_keeps_the_dtype_and_the_rate():
    layer = Dropout(0.25, seed=4, dtype="mixed_bfloat16")
    x = positive_inputs()
    y = layer(x, training=True)
    assert dtype_name(y) == "bfloat16"
    y = to_numpy(keras.ops.cast(y, "float32"))
    kept = y != 0
    x_bf16 = to_numpy(keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32"))
    # x (rounded to bfloat16) times 4/3 rounded to bfloat16, rounded again.
    scale = to_numpy(keras.ops.cast(keras.ops.cast(4 / 3, "bfloat16"), "float32"))
    np.testing.assert_allclose(y[kept], (x_bf16 * scale)[kept], rtol=2**-8)
    assert abs((1 - kept.mean()) - 0.25) < 5 * np.sqrt(0.25 * 0.75 / x.size)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a stateful seed generator inside a gradient trace is TensorFlow's",
)
def test_gradient_is_the_same_mask():
    import tensorflow as tf

    x = tf.constant(positive_inputs((4, 6, 8)))
    upstream = tf.constant(np.random.default_rng(5).normal(size=(4, 6, 8)), "float32")
    layer = Dropout(0.4, seed=6)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * upstream)
    grad = tape.gradient(loss, x).numpy()
    # d(x * mask)/dx = mask, the mask of this forward pass: y / x.
    np.testing.assert_allclose(
        grad, upstream.numpy() * (y.numpy() / x.numpy()), rtol=1e-6
    )
    assert np.any(grad == 0) and np.any(grad != 0)


def test_config_round_trip():
    layer = Dropout(0.2, noise_shape=(None, 1, 8), seed=7)
    x = positive_inputs((4, 6, 8))
    assert_config_round_trip(layer, x)  # inference: identity on both
    assert layer.get_config()["rate"] == 0.2
    assert layer.get_config()["noise_shape"] == (None, 1, 8)
