"""Keras layers of the Transformer ("Attention Is All You Need")."""

from keras_tfm.layers.decoder import Decoder
from keras_tfm.layers.decoder_layer import DecoderLayer
from keras_tfm.layers.dropout import Dropout
from keras_tfm.layers.encoder import Encoder
from keras_tfm.layers.encoder_layer import EncoderLayer
from keras_tfm.layers.layer_normalization import LayerNormalization
from keras_tfm.layers.multi_head_attention import MultiHeadAttention, causal_mask
from keras_tfm.layers.output_logits import OutputLogits
from keras_tfm.layers.positional_encoding import (
    PositionalEncoding,
    sinusoidal_positions,
)
from keras_tfm.layers.positionwise_feed_forward import PositionwiseFeedForward
from keras_tfm.layers.scaled_dot_product_attention import (
    scaled_dot_product_attention,
)
from keras_tfm.layers.token_embedding import TokenEmbedding

__all__ = [
    "Decoder",
    "DecoderLayer",
    "Dropout",
    "Encoder",
    "EncoderLayer",
    "LayerNormalization",
    "MultiHeadAttention",
    "OutputLogits",
    "PositionalEncoding",
    "PositionwiseFeedForward",
    "TokenEmbedding",
    "causal_mask",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
]
