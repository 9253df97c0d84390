"""Position-wise feed-forward network."""

import keras
from keras import ops

from keras_tfm.layers.dropout import Dropout


@keras.saving.register_keras_serializable(package="keras_tfm")
class PositionwiseFeedForward(keras.layers.Layer):
    """FFN(x) = activation(x W_1 + b_1) W_2 + b_2, applied at every position.

    Args:
        d_ff: inner width (2048 in the base model).
        activation: inner activation, ReLU in the paper.
        dropout: dropout on the inner activations (0 in the paper; the
            residual dropout lives in the encoder/decoder layers).
        kernel_initializer, bias_initializer: for both projections.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: `(batch, length, d_model)`; the output has the same shape.
        training: enables dropout.

    Masking: positions are independent, so a Keras mask passes through.

    Example:
    >>> ffn = PositionwiseFeedForward(d_ff=2048)
    >>> y = ffn(keras.random.normal((2, 7, 512)))  # (2, 7, 512)

    Reference: "Attention Is All You Need", section 3.3, equation (2).
    """

    def __init__(
        self,
        d_ff,
        activation="relu",
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if d_ff < 1:
            raise ValueError(f"d_ff must be >= 1, got {d_ff}")
        self.d_ff = int(d_ff)
        self.activation = keras.activations.get(activation)
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        d_model = input_shape[-1]
        common = dict(
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
        )
        # The Dense layers hold the weights; `call` applies them.
        self.inner_dense = keras.layers.Dense(
            self.d_ff, activation=self.activation, name="inner_dense", **common
        )
        self.inner_dense.build(input_shape)
        self.inner_dropout = Dropout(
            self.dropout, dtype=self.dtype_policy, name="inner_dropout"
        )
        self.output_dense = keras.layers.Dense(d_model, name="output_dense", **common)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.d_ff,))
        self.built = True

    def call(self, inputs, training=None):
        # 2-D matmuls (a 3-D Dense goes through tensordot); the biases are
        # added after reshaping back, because oneDNN's fused matmul + bias
        # kernel is slower on bfloat16 than the plain matmul and an add.
        d_model = inputs.shape[-1]
        batch_shape = ops.shape(inputs)[:-1]
        inner, outer = self.inner_dense, self.output_dense
        hidden = ops.matmul(ops.reshape(inputs, (-1, d_model)), inner.kernel)
        hidden = ops.reshape(hidden, (*batch_shape, self.d_ff)) + inner.bias
        hidden = self.inner_dropout(self.activation(hidden), training=training)
        outputs = ops.matmul(ops.reshape(hidden, (-1, self.d_ff)), outer.kernel)
        return ops.reshape(outputs, (*batch_shape, d_model)) + outer.bias

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "d_ff": self.d_ff,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
