"""`LabelSmoothedCrossEntropy` against NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.fitting import random_batch

from keras_tfm import training


def smoothed_ce_reference(labels, logits, eps):
    """Smoothed one-hot over the whole vocabulary, mean over non-pad tokens."""
    logits = logits.astype(np.float64)
    vocab = logits.shape[-1]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    onehot = np.eye(vocab)[labels]
    target = (1.0 - eps) * onehot + eps / vocab
    per_token = -(target * log_probs).sum(axis=-1)
    mask = labels != 0
    return per_token[mask].sum() / mask.sum()


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothed_loss_matches_numpy(eps):
    labels, logits = random_batch(0)
    loss = training.LabelSmoothedCrossEntropy(eps)
    got = float(keras.ops.convert_to_numpy(loss(labels, logits)))
    expected = smoothed_ce_reference(labels, logits, eps)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Logits at padding positions do not matter.
    noisy = logits.copy()
    noisy[labels == 0] = 1e3
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(loss(labels, noisy))), expected, rtol=1e-5
    )


def test_unsmoothed_loss_is_masked_sparse_cross_entropy():
    labels, logits = random_batch(1)
    got = float(
        keras.ops.convert_to_numpy(
            training.LabelSmoothedCrossEntropy(0.0)(labels, logits)
        )
    )
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits).numpy()
    mask = labels != 0
    np.testing.assert_allclose(got, per_token[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(
        got, smoothed_ce_reference(labels, logits, 0.0), rtol=1e-5
    )


def test_loss_config_and_validation():
    loss = training.LabelSmoothedCrossEntropy(0.2)
    rebuilt = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(rebuilt, training.LabelSmoothedCrossEntropy)
    assert rebuilt.label_smoothing == 0.2 and rebuilt.reduction == "sum"
    with pytest.raises(ValueError, match="label_smoothing"):
        training.LabelSmoothedCrossEntropy(1.0)
