"""The encoder stack."""

import keras

from keras_tfm.layers.dropout import Dropout
from keras_tfm.layers.encoder_layer import EncoderLayer
from keras_tfm.layers.layer_normalization import LayerNormalization
from keras_tfm.layers.positional_encoding import PositionalEncoding


@keras.saving.register_keras_serializable(package="keras_tfm")
class Encoder(keras.layers.Layer):
    """Positional encoding, dropout and a stack of N `EncoderLayer`s.

    The token embedding is applied by the caller (a `TokenEmbedding`), so
    that one embedding matrix can be shared by source, target and output
    projection; this layer adds positions, applies dropout (section 5.4) and
    runs the layers. Under `pre_norm` a final LayerNorm closes the stack.

    Args:
        num_layers: N (6 in the paper).
        num_heads, d_ff, dropout, attention_dropout, activation, pre_norm,
        layer_norm_epsilon: passed to every `EncoderLayer`.
        max_length: longest source the positional encoding accepts.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: embedded source `(batch, source_length, d_model)`.
        mask: source padding mask `(batch, source_length)`; taken from the
            Keras mask of `inputs` (a `TokenEmbedding` output carries one).
        training: enables dropout.

    Masking: padding positions are never attended to; the mask is passed on
    with the output, so a `Decoder` masks them in cross-attention.

    Example:
    >>> embed = TokenEmbedding(vocab_size=100, d_model=64)
    >>> encoder = Encoder(num_layers=2, num_heads=4, d_ff=128)
    >>> memory = encoder(embed(keras.ops.array([[3, 4, 5, 0]])))

    Reference: "Attention Is All You Need", sections 3.1 and 3.5.
    """

    def __init__(
        self,
        num_layers,
        num_heads,
        d_ff,
        dropout=0.1,
        attention_dropout=0.0,
        activation="relu",
        pre_norm=False,
        layer_norm_epsilon=1e-6,
        max_length=512,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.d_ff = int(d_ff)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.activation = keras.activations.get(activation)
        self.pre_norm = bool(pre_norm)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.max_length = int(max_length)
        self.supports_masking = True

    def build(self, input_shape):
        policy = self.dtype_policy
        self.positional_encoding = PositionalEncoding(
            self.max_length, dtype=policy, name="positional_encoding"
        )
        self.embedding_dropout = Dropout(
            self.dropout, dtype=policy, name="embedding_dropout"
        )
        self.encoder_layers = []
        for index in range(self.num_layers):
            layer = EncoderLayer(
                self.num_heads,
                self.d_ff,
                dropout=self.dropout,
                attention_dropout=self.attention_dropout,
                activation=self.activation,
                pre_norm=self.pre_norm,
                layer_norm_epsilon=self.layer_norm_epsilon,
                dtype=policy,
                name=f"encoder_layer_{index}",
            )
            layer.build(input_shape)
            self.encoder_layers.append(layer)
        self.final_norm = None
        if self.pre_norm:
            self.final_norm = LayerNormalization(
                epsilon=self.layer_norm_epsilon, dtype=policy, name="final_norm"
            )
            self.final_norm.build(input_shape)
        self.built = True

    def call(self, inputs, mask=None, training=None):
        if mask is None:
            mask = getattr(inputs, "_keras_mask", None)
        x = self.positional_encoding(inputs)
        x = self.embedding_dropout(x, training=training)
        for layer in self.encoder_layers:
            x = layer(x, mask=mask, training=training)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "d_ff": self.d_ff,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation": keras.activations.serialize(self.activation),
                "pre_norm": self.pre_norm,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "max_length": self.max_length,
            }
        )
        return config
