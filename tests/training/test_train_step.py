"""The job's training step: gradient accumulation makes the step of the
whole batch, and the step counter counts only the batches trained."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.fitting import compiled, copy_task, small_model
from support.schedules import paper_lr

from keras_tfm import training


def accumulation_batch():
    """8 rows: the first four 9 tokens long, the last four one token, so
    that micro-batches hold very different token counts."""
    rng = np.random.default_rng(4)
    source = rng.integers(3, 20, (8, 9)).astype("int32")
    labels = rng.integers(3, 20, (8, 9)).astype("int32")
    labels[4:, 1:] = 0
    source[4:, 2:] = 0
    target = np.concatenate([np.full((8, 1), 1, "int32"), labels[:, :-1]], axis=1)
    target[labels == 0] = 0
    return {"source": source, "target": target}, labels


def one_sgd_step(batch, accumulate_steps=1, policy="float32"):
    """Initial and updated weights after one SGD step on `batch`."""
    from keras_tfm import TransformerConfig, build_transformer

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(11)
        config = TransformerConfig.preset(
            "tiny", src_vocab_size=20, tgt_vocab_size=20, dropout=0.0, max_length=16
        )
        model = build_transformer(config)
        training.compile_model(model, keras.optimizers.SGD(learning_rate=1.0), 0.1)
        strategy = tf.distribute.get_strategy()
        training.prepare_for_fit(model, strategy, batch, accumulate_steps)
        before = [np.array(w) for w in model.get_weights()]
        history = model.fit(
            tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0
        ).history
        after = [np.array(w) for w in model.get_weights()]
        assert int(model.optimizer.iterations) == 1
    finally:
        keras.config.set_dtype_policy(previous)
    update = np.concatenate([(a - b).ravel() for a, b in zip(after, before)])
    return update, history["loss"][0]


def rows(batch, part):
    x, y = batch
    return {k: v[part] for k, v in x.items()}, y[part]


def test_accumulated_step_is_the_step_of_the_whole_batch():
    """N micro-batches make one SGD step equal to the whole batch's (token
    weighted), also for an uneven split (8 rows in 3), and not the mean of
    the micro-batches' own steps."""
    batch = accumulation_batch()
    whole, loss = one_sgd_step(batch)
    for n in (2, 3):
        accumulated, accumulated_loss = one_sgd_step(batch, n)
        np.testing.assert_allclose(accumulated, whole, atol=2e-6, err_msg=str(n))
        np.testing.assert_allclose(accumulated_loss, loss, rtol=1e-6)
    # Independent check: the two halves' steps, weighted by their tokens.
    halves = [rows(batch, slice(0, 4)), rows(batch, slice(4, 8))]
    tokens = np.array([(half[1] != 0).sum() for half in halves], np.float64)
    assert tokens[0] > 5 * tokens[1]
    steps = [one_sgd_step(half)[0] for half in halves]
    weighted = (tokens[0] * steps[0] + tokens[1] * steps[1]) / tokens.sum()
    np.testing.assert_allclose(whole, weighted, atol=2e-6)
    mean_of_means = (steps[0] + steps[1]) / 2
    assert np.abs(mean_of_means - whole).max() > 100 * 2e-6


@pytest.mark.slow
def test_accumulation_under_mixed_bfloat16():
    batch = accumulation_batch()
    whole, _ = one_sgd_step(batch, policy="mixed_bfloat16")
    accumulated, _ = one_sgd_step(batch, 2, policy="mixed_bfloat16")
    halves = [rows(batch, slice(0, 4)), rows(batch, slice(4, 8))]
    steps = [one_sgd_step(half, policy="mixed_bfloat16")[0] for half in halves]
    error = np.abs(accumulated - whole).max()
    assert error < 0.02 * np.abs(whole).max()
    assert np.abs((steps[0] + steps[1]) / 2 - whole).max() > 10 * error


def test_accumulate_steps_must_be_a_positive_int():
    model = small_model()
    compiled(model)
    with pytest.raises(ValueError, match="accumulate_steps must be an int >= 1"):
        training.token_mean_steps(model, accumulate_steps=0)


@pytest.mark.parametrize("accumulate_steps", [1, 2])
def test_the_step_counter_counts_only_the_batches_trained(accumulate_steps):
    """An epoch of a dataset of unknown length ends with a call that finds
    the data exhausted. That call must not move the optimizer's step
    counter, which the learning-rate schedule (and its cooldown) reads."""
    x, y = copy_task(rows=44)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(8)
        .filter(lambda *_: True)  # unknown length, as keras-tfm's pipelines
    )
    batches = -(-44 // 8)
    model = compiled(small_model(), d_model=16, warmup=5)
    training.prepare_for_fit(
        model, tf.distribute.get_strategy(), next(iter(dataset)), accumulate_steps
    )
    counts = []
    model.fit(
        dataset,
        epochs=3,
        verbose=0,
        callbacks=[
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: counts.append(
                    training.optimizer_steps(model)
                )
            )
        ],
    )
    assert counts == [batches, 2 * batches, 3 * batches]
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        paper_lr(3 * batches, 16, 5),
        rtol=2e-6,
    )
