"""Pre-softmax projection to the target vocabulary, in float32."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_tfm")
class OutputLogits(keras.layers.Layer):
    """Linear projection from d_model to vocabulary logits.

    The matmul runs in the compute dtype (bfloat16 under `mixed_bfloat16`)
    and the logits are returned in float32, so the softmax, the loss and
    beam scores keep full precision. With `tie_output` the model uses
    `TokenEmbedding(..., reverse=True)` instead of this layer.

    Args:
        vocab_size: number of output classes.
        use_bias: add a bias per token.
        kernel_initializer, bias_initializer: for the projection.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: `(batch, length, d_model)`.

    Masking: the incoming Keras mask passes through, so masked losses and
    metrics skip padding.

    Example:
    >>> logits = OutputLogits(vocab_size=32000)(keras.random.normal((2, 9, 512)))

    Reference: "Attention Is All You Need", section 3.4.
    """

    def __init__(
        self,
        vocab_size,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.vocab_size = int(vocab_size)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.vocab_size),
            initializer=self.kernel_initializer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.vocab_size,),
                initializer=self.bias_initializer,
            )
        self.built = True

    def call(self, inputs):
        # A 2-D matmul (a 3-D one goes through tensordot); the bias is added
        # after the reshape, because oneDNN's fused matmul + bias kernel is
        # slower on bfloat16 than the plain matmul and an add.
        flat = ops.reshape(inputs, (-1, inputs.shape[-1]))
        logits = ops.matmul(flat, self.kernel)
        batch_shape = ops.shape(inputs)[:-1]
        logits = ops.reshape(logits, (*batch_shape, self.vocab_size))
        if self.bias is not None:
            logits = logits + self.bias
        return ops.cast(logits, "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.vocab_size,)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype="float32"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
