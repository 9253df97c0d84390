"""The encoder-decoder Transformer model and its configuration."""

from keras_tfm.models.transformer import Transformer, build_transformer
from keras_tfm.models.transformer_config import PRESETS, TransformerConfig

__all__ = ["PRESETS", "Transformer", "TransformerConfig", "build_transformer"]
