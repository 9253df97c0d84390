"""keras_tfm: the Transformer of "Attention Is All You Need" as Keras layers."""

# `training` registers the optimizer, schedule, loss and metrics that a model
# saved by `keras-tfm train` names, for `keras.models.load_model`.
from keras_tfm import layers, training  # noqa: F401
from keras_tfm.decoding.generation import generate, make_generate_fn
from keras_tfm.decoding.options import DecodingOptions
from keras_tfm.models.transformer import Transformer, build_transformer
from keras_tfm.models.transformer_config import TransformerConfig

__version__ = "0.2.0"

__all__ = [
    "DecodingOptions",
    "Transformer",
    "TransformerConfig",
    "build_transformer",
    "export_saved_model",
    "generate",
    "layers",
    "load_run",
    "make_generate_fn",
]

# What needs TensorFlow is imported on first use, so that `import keras_tfm`
# stays backend-neutral (the layers, the model and `generate` also run under
# JAX).
_LAZY = {
    "export_saved_model": "keras_tfm.export.saved_model",
    "load_run": "keras_tfm.job.finished_run",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_tfm' has no attribute {name!r}")
