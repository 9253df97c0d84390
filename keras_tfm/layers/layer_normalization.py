"""LayerNorm over the last axis with a hand-written gradient."""

import keras
from keras import ops


def layer_norm_last_axis(x, gamma, beta, epsilon):
    """`(x - mean) / sqrt(var + epsilon) * gamma + beta` over the last axis.

    Computed in at least float32 (as Keras does for half precision),
    returned in the input dtype. The gradient is written out:
    with `x_hat` the normalised input, `g = dy * gamma` and `inv` the inverse
    standard deviation,

        dx     = inv * (g - mean(g) - x_hat * mean(g * x_hat))
        dgamma = sum(dy * x_hat)
        dbeta  = sum(dy)

    which TensorFlow's graph runs as about a dozen element-wise ops instead
    of the two dozen its autodiff of the forward pass produces.
    """

    compute_dtype = keras.backend.result_type(x.dtype, "float32")

    @ops.custom_gradient
    def norm(x, gamma, beta):
        xf = ops.cast(x, compute_dtype)
        centered = xf - ops.mean(xf, axis=-1, keepdims=True)
        inv = ops.rsqrt(
            ops.mean(ops.square(centered), axis=-1, keepdims=True) + epsilon
        )
        x_hat = centered * inv
        gamma = ops.cast(gamma, compute_dtype)
        y = ops.cast(x_hat * gamma + ops.cast(beta, compute_dtype), x.dtype)

        def grad(*args, upstream=None):
            dy = args[0] if upstream is None else upstream
            dy = ops.cast(dy, compute_dtype)
            batch_axes = tuple(range(len(x.shape) - 1))
            dy_x_hat = dy * x_hat
            g = dy * gamma
            dx = inv * (
                g
                - ops.mean(g, axis=-1, keepdims=True)
                - x_hat * ops.mean(dy_x_hat * gamma, axis=-1, keepdims=True)
            )
            dgamma = ops.sum(dy_x_hat, axis=batch_axes)
            dbeta = ops.sum(dy, axis=batch_axes)
            return ops.cast(dx, x.dtype), dgamma, dbeta

        return y, grad

    return norm(x, gamma, beta)


@keras.saving.register_keras_serializable(package="keras_tfm")
class LayerNormalization(keras.layers.LayerNormalization):
    """Keras' `LayerNormalization`, with a faster gradient on TensorFlow.

    The same layer, weights (`gamma`, `beta`) and config as
    `keras.layers.LayerNormalization`. On the TensorFlow backend, normalising
    the last axis with both `gamma` and `beta` runs `layer_norm_last_axis`,
    whose gradient is written out rather than derived op by op: a LayerNorm
    sits on the critical path of every sublayer, forward and backward, and
    the derived gradient is two dozen small ops. Other backends fuse
    LayerNorm themselves (XLA on JAX, PyTorch's `layer_norm` kernel), so
    they, and other settings (other axes, `center=False`, `scale=False`),
    use Keras' own call. The two paths are tested to agree.

    Args:
        epsilon: added to the variance (the paper leaves it unstated;
            keras_tfm's layers pass 1e-6).
        **kwargs: the arguments of `keras.layers.LayerNormalization`.

    Call arguments:
        inputs: a tensor of any rank; normalised over `axis` (the last).

    Masking: none needed (each position is normalised on its own); the
    Keras mask passes on.

    Example:
    >>> norm = LayerNormalization(epsilon=1e-6)
    >>> y = norm(keras.random.normal((2, 10, 512)))

    Reference: Ba, Kiros and Hinton, "Layer Normalization" (2016), used after
    every sublayer in "Attention Is All You Need", section 3.1.
    """

    def call(self, inputs):
        # `build` made `axis` a sorted list.
        last_axis = self.axis in ([-1], [len(inputs.shape) - 1])
        if (
            keras.backend.backend() != "tensorflow"
            or self.rms_scaling
            or not (self.center and self.scale and last_axis)
        ):
            return super().call(inputs)
        outputs = layer_norm_last_axis(
            inputs,
            # Read as tensors (a cast to the variables' own dtype): the
            # gradient is taken with respect to inputs, not variables.
            ops.cast(self.gamma, self.gamma.dtype),
            ops.cast(self.beta, self.beta.dtype),
            self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)
