import keras
import numpy as np
import pytest
from support.numerics import assert_config_round_trip, dtype_name, to_numpy

from keras_tfm.layers import LayerNormalization
from keras_tfm.layers.layer_normalization import layer_norm_last_axis

EPSILON = 1e-6


def numpy_layer_norm(x, gamma, beta, epsilon=EPSILON):
    x = x.astype("float64")
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def gradients(fn, *args):
    """Gradients of the scalar `fn(*args)` with respect to every argument."""
    if keras.backend.backend() == "jax":
        import jax

        return [
            np.asarray(g) for g in jax.grad(fn, argnums=tuple(range(len(args))))(*args)
        ]
    import tensorflow as tf

    args = [tf.convert_to_tensor(a) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(args)
        value = fn(*args)
    return [g.numpy() for g in tape.gradient(value, args)]


def inputs(seed=0, shape=(2, 3, 8)):
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, size=shape).astype("float32")
    gamma = rng.normal(1.0, 0.5, size=shape[-1:]).astype("float32")
    beta = rng.normal(size=shape[-1:]).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    return x, gamma, beta, upstream


def test_forward_matches_numpy_and_keras():
    x, gamma, beta, _ = inputs()
    norm = LayerNormalization(epsilon=EPSILON)
    norm.build(x.shape)
    norm.set_weights([gamma, beta])
    keras_norm = keras.layers.LayerNormalization(epsilon=EPSILON)
    keras_norm.build(x.shape)
    keras_norm.set_weights([gamma, beta])
    got = to_numpy(norm(x))
    np.testing.assert_allclose(
        got, numpy_layer_norm(x, gamma, beta), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(got, to_numpy(keras_norm(x)), rtol=1e-5, atol=1e-6)


def test_gradient_matches_finite_differences_of_numpy():
    x, gamma, beta, upstream = inputs(1, (2, 2, 6))
    got = gradients(
        lambda x, g, b: keras.ops.sum(
            layer_norm_last_axis(x, g, b, EPSILON) * upstream
        ),
        x,
        gamma,
        beta,
    )

    def loss(values):
        return float((numpy_layer_norm(*values) * upstream).sum())

    values = [x.astype("float64"), gamma.astype("float64"), beta.astype("float64")]
    step = 1e-6
    for index, value in enumerate(values):
        expected = np.zeros_like(value)
        for position in np.ndindex(value.shape):
            plus = [v.copy() for v in values]
            minus = [v.copy() for v in values]
            plus[index][position] += step
            minus[index][position] -= step
            expected[position] = (loss(plus) - loss(minus)) / (2 * step)
        np.testing.assert_allclose(got[index], expected, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the hand-written gradient is the layer's TensorFlow path",
)
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_layer_gradient_matches_keras_layer_autodiff(policy):
    import tensorflow as tf

    keras.config.set_dtype_policy(policy)
    x, gamma, beta, upstream = inputs(2, (4, 5, 16))
    results = []
    for layer in (
        LayerNormalization(epsilon=EPSILON),
        keras.layers.LayerNormalization(epsilon=EPSILON),
    ):
        layer.build(x.shape)
        layer.set_weights([gamma, beta])
        xs = tf.cast(x, layer.compute_dtype)
        with tf.GradientTape() as tape:
            tape.watch(xs)
            out = layer(xs)
            value = tf.reduce_sum(tf.cast(out, "float32") * upstream)
        assert dtype_name(out) == layer.compute_dtype
        grads = tape.gradient(value, [xs, layer.gamma, layer.beta])
        assert [dtype_name(g) for g in grads] == [
            layer.compute_dtype,
            "float32",
            "float32",
        ]
        results.append([tf.cast(g, "float32").numpy() for g in grads])
    # bfloat16 keeps 8 bits of mantissa: both paths round dx to it.
    tolerance = 1e-5 if policy == "float32" else 2e-2
    for ours, reference in zip(*results):
        np.testing.assert_allclose(ours, reference, rtol=tolerance, atol=tolerance)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the hand-written gradient is the layer's TensorFlow path",
)
def test_tensorflow_graph_holds_the_written_gradient_only_on_the_last_axis():
    import tensorflow as tf

    def op_types(layer):
        layer.build((None, 4, 8))
        spec = tf.TensorSpec((None, 4, 8))
        graph = tf.function(layer).get_concrete_function(spec).graph
        return {op.type for op in graph.get_operations()}

    # tf.custom_gradient marks its outputs with an IdentityN op.
    assert "IdentityN" in op_types(LayerNormalization(epsilon=EPSILON))
    assert "IdentityN" not in op_types(LayerNormalization(epsilon=EPSILON, axis=1))


def test_other_settings_use_keras_call():
    x = inputs(3)[0]
    rng = np.random.default_rng(3)
    for kwargs in ({"axis": 1}, {"center": False}, {"scale": False}):
        keras_norm = keras.layers.LayerNormalization(epsilon=EPSILON, **kwargs)
        keras_norm.build(x.shape)
        keras_norm.set_weights(
            [
                rng.normal(size=w.shape).astype("float32")
                for w in keras_norm.get_weights()
            ]
        )
        norm = LayerNormalization(epsilon=EPSILON, **kwargs)
        norm.build(x.shape)
        norm.set_weights(keras_norm.get_weights())
        np.testing.assert_allclose(
            to_numpy(norm(x)), to_numpy(keras_norm(x)), rtol=1e-6, atol=1e-6
        )


def test_config_round_trip():
    x, gamma, beta, _ = inputs(4)
    norm = LayerNormalization(epsilon=1e-5)
    norm.build(x.shape)
    norm.set_weights([gamma, beta])
    assert_config_round_trip(norm, x)
    assert norm.get_config()["epsilon"] == 1e-5


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="JAX computes in float32 unless x64 is enabled",
)
def test_float64_is_computed_in_float64():
    keras.config.set_dtype_policy("float64")
    x, gamma, beta, _ = inputs(5)
    norm = LayerNormalization(epsilon=1e-12)
    norm.build(x.shape)
    norm.set_weights([gamma.astype("float64"), beta.astype("float64")])
    x = x.astype("float64")
    got = to_numpy(norm(x))
    assert got.dtype == np.float64
    expected = numpy_layer_norm(x, gamma, beta, epsilon=1e-12)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
