"""Dropout whose keep decisions come from float32 draws."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_tfm")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` with float32 draws and a mask product.

    Each element is kept with probability `1 - rate` and scaled by
    `1 / (1 - rate)`, as in Keras. Two things differ in how: the uniform
    draws are float32 whatever the compute dtype (TensorFlow draws bfloat16
    numbers more slowly than float32 ones on the CPU), and the output is the
    input times a mask of `0` and `1 / (1 - rate)`, so the gradient is one
    product with the same mask. Keras' TensorFlow dropout selects between
    the scaled input and zeros, forward and backward.

    Args:
        rate: the fraction of elements to drop, in `[0, 1]`.
        noise_shape: as in Keras: the shape of the keep mask, broadcast
            over the input (None entries take the input's size).
        seed: seeds the layer's `keras.random.SeedGenerator`.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: a tensor of any shape.
        training: drop only when True.

    Masking: a Keras mask on the input passes through unchanged.

    Example:
    >>> dropout = Dropout(0.1)
    >>> y = dropout(keras.random.normal((2, 5, 16)), training=True)

    Reference: "Attention Is All You Need", section 5.4 (residual dropout),
    after Srivastava et al. (2014).
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            return ops.zeros_like(inputs)
        shape = ops.shape(inputs)
        if self.noise_shape is not None:
            shape = tuple(
                size if wanted is None else wanted
                for size, wanted in zip(shape, self.noise_shape)
            )
        draws = keras.random.uniform(shape, dtype="float32", seed=self.seed_generator)
        keep_scale = ops.cast(1.0 / (1.0 - self.rate), inputs.dtype)
        mask = ops.where(draws >= self.rate, keep_scale, ops.zeros((), inputs.dtype))
        return inputs * mask
