import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


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


def dtype_name(x):
    return keras.backend.standardize_dtype(x.dtype)
