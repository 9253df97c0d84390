"""Tensors to NumPy, dtype names and a layer's config round trip."""

import keras
import numpy as np


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def dtype_name(x):
    return keras.backend.standardize_dtype(x.dtype)


def assert_config_round_trip(layer, *call_args, **call_kwargs):
    """Rebuilds a layer from get_config, copies weights, checks equal outputs."""
    expected = to_numpy(layer(*call_args, **call_kwargs))
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    clone(*call_args, **call_kwargs)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == config
    np.testing.assert_allclose(
        to_numpy(clone(*call_args, **call_kwargs)), expected, rtol=1e-6, atol=1e-6
    )
    # The serialized form must also be resolvable through the registry.
    rebuilt = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(rebuilt) is type(layer)
