"""`MaskedAccuracy` and `TokenCount` against NumPy."""

import keras
import numpy as np
from support.fitting import random_batch

from keras_tfm import training


def test_masked_accuracy_and_token_count_match_numpy():
    accuracy, tokens = training.MaskedAccuracy(), training.TokenCount()
    correct = total = 0
    for seed in (2, 3):
        labels, logits = random_batch(seed, vocab=4)  # small vocab: many hits
        accuracy.update_state(labels, logits)
        tokens.update_state(labels, logits)
        mask = labels != 0
        correct += int(((logits.argmax(-1) == labels) & mask).sum())
        total += int(mask.sum())
    assert 0 < correct < total
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(accuracy.result())), correct / total, rtol=1e-6
    )
    assert float(keras.ops.convert_to_numpy(tokens.result())) == total
    accuracy.reset_state()
    tokens.reset_state()
    assert float(keras.ops.convert_to_numpy(accuracy.result())) == 0.0
    assert float(keras.ops.convert_to_numpy(tokens.result())) == 0.0
