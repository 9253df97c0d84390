"""Token embedding scaled by sqrt(d_model), reusable as the output projection."""

import math

import keras
from keras import ops

from keras_tfm.constants import PADDING_ID


@keras.saving.register_keras_serializable(package="keras_tfm")
class TokenEmbedding(keras.layers.Layer):
    """Maps token ids to vectors and multiplies them by sqrt(d_model).

    Id 0 is padding: the layer emits a Keras mask that is False there, and
    every downstream keras_tfm layer honours it. One instance can embed both
    source and target (a shared vocabulary) and, called with `reverse=True`,
    also serve as the pre-softmax projection (weight tying, section 3.4 of
    the paper): `logits = x @ E^T`, returned in float32.

    Args:
        vocab_size: number of token ids, padding included.
        d_model: embedding width.
        scale: multiply embeddings by sqrt(d_model) (the paper does).
        mask_zero: emit a padding mask for id 0.
        embeddings_initializer: defaults to a normal with stddev
            d_model ** -0.5, so scaled embeddings start at unit variance and
            tied logits start small.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: int tensor `(batch, length)` of ids, or with `reverse=True` a
            float tensor `(batch, length, d_model)`.
        reverse: project vectors to vocabulary logits with the transposed
            embedding matrix instead of looking ids up.

    Example:
    >>> embed = TokenEmbedding(vocab_size=1000, d_model=64)
    >>> vectors = embed(keras.ops.array([[5, 7, 0]]))   # mask [T, T, F]
    >>> logits = embed(vectors, reverse=True)           # (1, 3, 1000)

    Reference: "Attention Is All You Need", section 3.4.
    """

    def __init__(
        self,
        vocab_size,
        d_model,
        scale=True,
        mask_zero=True,
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if vocab_size < 1 or d_model < 1:
            raise ValueError(
                f"TokenEmbedding: vocab_size and d_model must be >= 1, got "
                f"vocab_size={vocab_size}, d_model={d_model}"
            )
        self.vocab_size = int(vocab_size)
        self.d_model = int(d_model)
        self.scale = bool(scale)
        self.mask_zero = bool(mask_zero)
        if embeddings_initializer is None:
            embeddings_initializer = keras.initializers.RandomNormal(
                stddev=self.d_model**-0.5
            )
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.vocab_size, self.d_model),
            initializer=self.embeddings_initializer,
        )
        self.built = True

    def call(self, inputs, reverse=False):
        if reverse:
            logits = ops.matmul(
                ops.cast(inputs, self.compute_dtype),
                ops.transpose(ops.convert_to_tensor(self.embeddings)),
            )
            return ops.cast(logits, "float32")
        ids = ops.cast(inputs, "int32")
        vectors = ops.take(self.embeddings, ids, axis=0)
        vectors = ops.cast(vectors, self.compute_dtype)
        if self.scale:
            vectors = vectors * ops.cast(math.sqrt(self.d_model), vectors.dtype)
        return vectors

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero or "float" in keras.backend.standardize_dtype(
            inputs.dtype
        ):
            return None
        return ops.not_equal(inputs, PADDING_ID)

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return tuple(input_shape[:-1]) + (self.vocab_size,)
        return tuple(input_shape) + (self.d_model,)

    def compute_output_spec(self, inputs, reverse=False):
        shape = self.compute_output_shape(inputs.shape, reverse=reverse)
        dtype = "float32" if reverse else self.compute_dtype
        return keras.KerasTensor(shape, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "d_model": self.d_model,
                "scale": self.scale,
                "mask_zero": self.mask_zero,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
