"""keras_tfm: the Transformer of "Attention Is All You Need" as Keras layers."""

from keras_tfm import layers
from keras_tfm.config import DecodingOptions, TransformerConfig
from keras_tfm.generation import generate, make_generate_fn
from keras_tfm.model import build_transformer, transformer_parts

__version__ = "0.1.0"

__all__ = [
    "DecodingOptions",
    "TransformerConfig",
    "build_transformer",
    "export_saved_model",
    "generate",
    "layers",
    "make_generate_fn",
    "transformer_parts",
]


def __getattr__(name):
    # The export needs TensorFlow; importing it lazily keeps `import keras_tfm`
    # backend-neutral (the layers also run under JAX).
    if name == "export_saved_model":
        from keras_tfm.export import export_saved_model

        return export_saved_model
    raise AttributeError(f"module 'keras_tfm' has no attribute {name!r}")
