"""keras_tfm: the Transformer of "Attention Is All You Need" as Keras layers."""

# `training` registers the optimizer, schedule, loss and metrics that a model
# saved by `keras-tfm train` names, for `keras.models.load_model`.
from keras_tfm import layers, training  # noqa: F401
from keras_tfm.decoding.generation import generate, make_generate_fn
from keras_tfm.decoding.options import DecodingOptions
from keras_tfm.models.transformer import build_transformer, transformer_parts
from keras_tfm.models.transformer_config import TransformerConfig

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
        from keras_tfm.export.saved_model import export_saved_model

        return export_saved_model
    raise AttributeError(f"module 'keras_tfm' has no attribute {name!r}")
