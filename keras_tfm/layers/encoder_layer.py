"""One encoder layer: self-attention and feed-forward, each with residual + norm."""

import keras

from keras_tfm.layers.dropout import Dropout
from keras_tfm.layers.layer_normalization import LayerNormalization
from keras_tfm.layers.multi_head_attention import MultiHeadAttention
from keras_tfm.layers.positionwise_feed_forward import PositionwiseFeedForward


def residual(x, sublayer_output, norm, dropout, pre_norm, training):
    """Dropout -> residual add, then LayerNorm unless the block is pre-norm."""
    x = x + dropout(sublayer_output, training=training)
    return x if pre_norm else norm(x)


@keras.saving.register_keras_serializable(package="keras_tfm")
class EncoderLayer(keras.layers.Layer):
    """Multi-head self-attention followed by a position-wise feed-forward.

    Each sublayer is wrapped as in section 5.4 of the paper:
    post-LN (default) `LayerNorm(x + Dropout(Sublayer(x)))`, or with
    `pre_norm=True` `x + Dropout(Sublayer(LayerNorm(x)))`, which trains more
    stably in deep stacks (the encoder then needs a final LayerNorm).

    Args:
        num_heads: attention heads; d_model (taken from the input) must be
            divisible by it.
        d_ff: feed-forward inner width.
        dropout: residual dropout rate (P_drop, 0.1 in the base model).
        attention_dropout: dropout on attention weights.
        activation: feed-forward activation.
        pre_norm: pre-LN instead of post-LN.
        layer_norm_epsilon: LayerNorm epsilon.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: `(batch, length, d_model)`.
        mask: boolean padding mask `(batch, length)`; taken from the input's
            Keras mask when not given.
        attention_mask: optional boolean `(batch, length, length)`, True
            where attention is allowed, combined with the padding mask.
        training: enables dropout.

    Masking: padded keys are never attended to; the Keras mask passes on.

    Example:
    >>> layer = EncoderLayer(num_heads=8, d_ff=2048)
    >>> y = layer(keras.random.normal((2, 10, 512)))

    Reference: "Attention Is All You Need", section 3.1.
    """

    def __init__(
        self,
        num_heads,
        d_ff,
        dropout=0.1,
        attention_dropout=0.0,
        activation="relu",
        pre_norm=False,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.d_ff = int(d_ff)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.activation = keras.activations.get(activation)
        self.pre_norm = bool(pre_norm)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.supports_masking = True

    def build(self, input_shape):
        policy = self.dtype_policy
        self.self_attention = MultiHeadAttention(
            self.num_heads,
            dropout=self.attention_dropout,
            dtype=policy,
            name="self_attention",
        )
        self.self_attention.build(input_shape, input_shape)
        self.self_attention_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=policy,
            name="self_attention_norm",
        )
        self.self_attention_norm.build(input_shape)
        self.self_attention_dropout = Dropout(
            self.dropout, dtype=policy, name="self_attention_dropout"
        )
        self.feed_forward = PositionwiseFeedForward(
            self.d_ff,
            activation=self.activation,
            dtype=policy,
            name="feed_forward",
        )
        self.feed_forward.build(input_shape)
        self.feed_forward_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=policy,
            name="feed_forward_norm",
        )
        self.feed_forward_norm.build(input_shape)
        self.feed_forward_dropout = Dropout(
            self.dropout, dtype=policy, name="feed_forward_dropout"
        )
        self.built = True

    def call(self, inputs, mask=None, attention_mask=None, training=None):
        if mask is None:
            mask = getattr(inputs, "_keras_mask", None)
        x = inputs
        normed = self.self_attention_norm(x) if self.pre_norm else x
        attended = self.self_attention(
            normed,
            normed,
            query_mask=mask,
            value_mask=mask,
            attention_mask=attention_mask,
            training=training,
        )
        x = residual(
            x,
            attended,
            self.self_attention_norm,
            self.self_attention_dropout,
            self.pre_norm,
            training,
        )
        normed = self.feed_forward_norm(x) if self.pre_norm else x
        transformed = self.feed_forward(normed, training=training)
        return residual(
            x,
            transformed,
            self.feed_forward_norm,
            self.feed_forward_dropout,
            self.pre_norm,
            training,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "d_ff": self.d_ff,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation": keras.activations.serialize(self.activation),
                "pre_norm": self.pre_norm,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
