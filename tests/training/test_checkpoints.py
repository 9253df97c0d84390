"""Checkpoint averaging (section 6.1 of the paper)."""

import numpy as np
import pytest
from support.fitting import small_model

from keras_tfm import training


def test_average_checkpoints_is_the_mean_of_the_saved_weights(tmp_path):
    model = small_model()
    model.build((None, None))
    rng = np.random.default_rng(0)
    saved = []
    for index in range(3):
        weights = [
            rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()
        ]
        model.set_weights(weights)
        model.save(tmp_path / f"epoch_{index}.keras")
        saved.append(weights)
    target = small_model()
    target.build((None, None))
    training.average_checkpoints(
        target, [tmp_path / f"epoch_{i}.keras" for i in (1, 2)]
    )
    for got, first, second in zip(target.get_weights(), saved[1], saved[2]):
        np.testing.assert_allclose(got, (first + second) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="no checkpoints"):
        training.average_checkpoints(target, [])
