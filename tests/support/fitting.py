"""Tiny Keras models and data for tests of `fit` and its pieces."""

import keras
import numpy as np

from keras_tfm import training

VOCAB = 9


def small_model():
    """Embedding and dense logits over `VOCAB` ids: the smallest model the
    job's loss, metrics and callbacks run on."""
    inputs = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(VOCAB, 8)(inputs)
    return keras.Model(inputs, keras.layers.Dense(VOCAB)(hidden))


def copy_task(rows=48, length=6, seed=0):
    """`(x, y)`, y = x: rows of ids in [1, VOCAB) padded with 0 at the end."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, size=(rows, length)).astype(np.int32)
    lengths = rng.integers(1, length + 1, size=rows)
    x[np.arange(length)[None, :] >= lengths[:, None]] = 0
    return x, x.copy()


def compiled(model, d_model=16, warmup=5, scale=1.0):
    """`model` compiled as the job compiles it, on the paper's schedule."""
    return training.compile_model(
        model, training.make_optimizer(d_model, warmup_steps=warmup, scale=scale), 0.1
    )


def random_batch(seed, batch=4, length=7, vocab=11):
    """`(labels, logits)` of a loss or metric: random logits, labels with
    padded row ends."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(batch, length, vocab)).astype(np.float32)
    labels = rng.integers(1, vocab, size=(batch, length)).astype(np.int32)
    # Padding at the end of rows, of different lengths; one row all padding.
    for row, pad in enumerate([0, 2, 5, length]):
        if pad:
            labels[row, length - pad :] = 0
    return labels, logits
