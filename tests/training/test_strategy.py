"""`make_strategy`: the `tf.distribute` strategy of each name."""

import pytest
import tensorflow as tf

from keras_tfm import training


# ---------------------------------------------------------------- strategy
def test_make_strategy_on_cpu():
    assert training.make_strategy("auto").num_replicas_in_sync >= 1
    strategy = training.make_strategy("one_device")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        training.make_strategy("nope")
