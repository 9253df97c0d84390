"""keras_tfm: the Transformer of "Attention Is All You Need" as Keras layers."""

from keras_tfm import layers
from keras_tfm.config import TransformerConfig
from keras_tfm.model import build_transformer, transformer_parts

__version__ = "0.1.0"

__all__ = [
    "TransformerConfig",
    "build_transformer",
    "layers",
    "transformer_parts",
]
