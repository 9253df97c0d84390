"""Sinusoidal positional encoding."""

import math

import keras
from keras import ops


def sinusoidal_positions(positions, depth):
    """Sine/cosine encodings for `positions` (1-D float tensor), interleaved.

    Column 2i holds sin(pos / 10000^(2i/depth)) and column 2i+1 holds
    cos(pos / 10000^(2i/depth)). Always computed in float32.
    """
    positions = ops.cast(positions, "float32")
    dims = ops.arange(depth, dtype="float32")
    # 2i for both members of the (sin, cos) pair.
    even_dims = dims - ops.mod(dims, 2.0)
    inverse_frequency = ops.exp(even_dims * (-math.log(10000.0) / depth))
    angles = ops.expand_dims(positions, -1) * inverse_frequency
    is_even = ops.equal(ops.mod(dims, 2.0), 0.0)
    return ops.where(is_even, ops.sin(angles), ops.cos(angles))


@keras.saving.register_keras_serializable(package="keras_tfm")
class PositionalEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal position signal of Vaswani et al. (2017).

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

    The table is computed in float32 on the fly (no weights) and cast to the
    layer's compute dtype before it is added, so half-precision policies do
    not lose resolution in the angles.

    Args:
        max_length: the longest sequence the model is meant to see. A
            statically known longer input raises a ValueError.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor `(batch, length, d_model)`.
        start_index: int or scalar int tensor, the position of the first
            element of `inputs`. Incremental decoding encodes step `t` alone
            with `start_index=t`.

    Masking: a Keras mask on `inputs` passes through unchanged.

    Example:
    >>> x = keras.ops.zeros((2, 10, 64))
    >>> y = PositionalEncoding(max_length=128)(x)  # y[:, p] = PE(p)

    Reference: "Attention Is All You Need", section 3.5.
    """

    def __init__(self, max_length=512, **kwargs):
        super().__init__(**kwargs)
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = int(max_length)
        self.supports_masking = True
        self.built = True

    def call(self, inputs, start_index=0):
        length = ops.shape(inputs)[1]
        if isinstance(length, int) and isinstance(start_index, int):
            if start_index + length > self.max_length:
                raise ValueError(
                    f"PositionalEncoding: positions up to {start_index + length}"
                    f" exceed max_length={self.max_length}"
                )
        positions = ops.arange(length, dtype="float32") + ops.cast(
            start_index, "float32"
        )
        encoding = sinusoidal_positions(positions, ops.shape(inputs)[-1])
        return inputs + ops.cast(encoding, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_length": self.max_length})
        return config
