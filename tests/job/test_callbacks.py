"""The training job's callbacks (`keras_tfm.job.callbacks`): throughput and
learning rate, time limit, NaN stop, backups, samples and step scalars."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.events import all_scalar_events
from support.fitting import compiled, copy_task, small_model
from support.schedules import paper_lr

from keras_tfm import training
from keras_tfm.job import callbacks


def test_fit_logs_learning_rate_throughput_and_epoch_token_counts():
    x, y = copy_task()
    xv, yv = copy_task(rows=8, seed=1)
    model = compiled(small_model())
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        validation_data=(xv, yv),
        verbose=0,
        callbacks=[callbacks.ThroughputAndLearningRate()],
    ).history
    steps_per_epoch = 6
    assert int(model.optimizer.iterations.numpy()) == 3 * steps_per_epoch
    # The rate the next step would use: iteration k -> step k + 1.
    expected_lr = paper_lr(steps_per_epoch * np.arange(1, 4), 16, 5)
    np.testing.assert_allclose(history["learning_rate"], expected_lr, rtol=2e-6)
    assert all(np.isfinite(v) and v > 0 for v in history["tokens_per_second"])
    # TokenCount is per epoch and per split: training and validation labels.
    assert history["tokens"] == [float((y != 0).sum())] * 3
    assert history["val_tokens"] == [float((yv != 0).sum())] * 3


def test_tokens_per_second_counts_steps_after_the_first(monkeypatch):
    """With a clock that ticks 1 s per reading, throughput is exact."""
    ticks = iter(range(1000))
    monkeypatch.setattr(
        callbacks, "time", type("Clock", (), {"perf_counter": lambda: next(ticks)})
    )
    x, y = copy_task(rows=40)
    model = compiled(small_model())
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[callbacks.ThroughputAndLearningRate()],
    ).history
    per_batch = (y != 0).reshape(5, 8, -1).sum(axis=(1, 2))
    # Timed from the end of step 1 to the end of step 5: 4 ticks, 4 batches.
    expected = per_batch[1:].sum() / 4.0
    np.testing.assert_allclose(history["tokens_per_second"], [expected] * 2, rtol=1e-6)


def test_tokens_per_second_is_left_out_for_a_single_step_epoch():
    x, y = copy_task(rows=8)
    model = compiled(small_model())
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[callbacks.ThroughputAndLearningRate()],
    ).history
    assert "tokens_per_second" not in history
    np.testing.assert_allclose(
        history["learning_rate"], paper_lr([1, 2], 16, 5), rtol=2e-6
    )


@pytest.mark.parametrize(
    "epoch_seconds, budget, expected_epochs",
    [
        # After epoch k, 10k s have passed and one more epoch would end at
        # 10(k + 1): 4 epochs fit in 45 s (a 5th would end at 50).
        ([10] * 9, 45, 4),
        ([10] * 9, 50, 5),  # ending exactly on the budget is allowed
        ([10] * 9, 1000, 9),  # never reached: all epochs run
        # Judged by the slowest epoch so far: after a 30 s first epoch
        # (tracing), 55 + 30 > 80 after epoch 6, though a 5 s epoch would fit.
        ([30, 5, 5, 5, 5, 5, 5, 5, 5], 80, 6),
        # The same for a slow epoch later on: 30 s passed, 20 more would be 50.
        ([5, 5, 20, 5, 5, 5, 5, 5, 5], 49, 3),
        ([5, 5, 20, 5, 5, 5, 5, 5, 5], 50, 4),
    ],
)
def test_time_limit_stops_before_an_epoch_that_would_overrun(
    monkeypatch, epoch_seconds, budget, expected_epochs
):
    """A fake clock advanced by each epoch's duration: the stop is exact."""
    now = [0.0]
    monkeypatch.setattr(
        callbacks, "time", type("Clock", (), {"perf_counter": lambda: now[0]})
    )
    durations = iter(epoch_seconds)

    class EpochTakes(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now[0] += next(durations)

    limit = callbacks.TimeLimit(budget)
    x, y = copy_task(rows=8)
    model = compiled(small_model())
    history = model.fit(
        x, y, batch_size=8, epochs=9, verbose=0, callbacks=[EpochTakes(), limit]
    )
    assert len(history.epoch) == expected_epochs
    expected_stop = expected_epochs if expected_epochs < 9 else None
    assert limit.stopped_after_epoch == expected_stop
    with pytest.raises(ValueError, match="seconds must be > 0"):
        callbacks.TimeLimit(0)


def test_stop_on_nan_stops_at_the_first_bad_step(capsys):
    x, y = copy_task()
    model = compiled(small_model())
    model.build((None, None))
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    guard = callbacks.StopOnNaN()
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[guard])
    assert guard.message is not None
    assert guard.message.startswith(
        "training stopped: the loss became nan at step 1 of epoch 1;"
    )
    assert guard.message in capsys.readouterr().out
    assert int(model.optimizer.iterations.numpy()) == 1
    assert len(history.history["loss"]) == 1


def test_stop_on_nan_with_a_huge_learning_rate_names_step_and_epoch():
    x, y = copy_task()
    model = compiled(small_model(), scale=1e30)
    guard = callbacks.StopOnNaN()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[guard])
    assert guard.message is not None
    steps = int(model.optimizer.iterations.numpy())
    assert 1 <= steps < 18
    step_in_epoch, epoch = (steps - 1) % 6 + 1, (steps - 1) // 6 + 1
    assert f"at step {step_in_epoch} of epoch {epoch};" in guard.message


def test_backup_epoch_counts_epochs_finished_by_backup_and_restore(tmp_path):
    assert callbacks.backup_epoch(tmp_path / "nothing") is None
    x, y = copy_task()
    backup_dir = tmp_path / "backup"
    for epochs in (1, 3):
        model = compiled(small_model())
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=epochs,
            verbose=0,
            callbacks=[
                keras.callbacks.BackupAndRestore(
                    str(backup_dir), delete_checkpoint=False
                )
            ],
        )
        assert callbacks.backup_epoch(backup_dir) == epochs
    # A fresh fit resumes after those epochs, so it runs only the missing one.
    model = compiled(small_model())
    seen = []
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=4,
        verbose=0,
        callbacks=[
            keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, _: seen.append(e)),
            keras.callbacks.BackupAndRestore(str(backup_dir)),
        ],
    )
    assert seen == [3]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "training_metadata.json").write_text("{")
    assert callbacks.backup_epoch(tmp_path / "broken") is None


def test_make_callbacks_order_and_paths(tmp_path):
    made, guard = callbacks.make_callbacks(str(tmp_path), patience=3)
    kinds = [type(c).__name__ for c in made]
    assert kinds == [
        "StopOnNaN",
        "ThroughputAndLearningRate",
        "TensorBoardWithStepMarkers",
        "ModelCheckpoint",
        "BackupAndRestore",
        "EarlyStopping",
    ]
    assert made[0] is guard
    assert isinstance(made[2], keras.callbacks.TensorBoard)
    assert made[2].log_dir == str(tmp_path / "logs")
    assert made[4].backup_dir == str(tmp_path / "backup")
    assert made[5].patience == 3 and made[5].restore_best_weights
    assert (made[5].monitor, made[5].mode) == ("val_loss", "min")
    made, _ = callbacks.make_callbacks(
        str(tmp_path), patience=2, early_stopping_metric="bleu"
    )
    assert (made[-1].monitor, made[-1].mode) == ("val_bleu", "max")
    made, _ = callbacks.make_callbacks(str(tmp_path), patience=0)
    assert "EarlyStopping" not in [type(c).__name__ for c in made]
    # The time limit last: an epoch's time includes the others' work.
    made, _ = callbacks.make_callbacks(str(tmp_path), time_limit=60.0, patience=1)
    assert type(made[-1]).__name__ == "TimeLimit"
    assert made[-1].seconds == 60.0


def test_sample_translations_writes_a_markdown_table(tmp_path):
    callback = callbacks.SampleTranslations(
        lambda sources: [s.upper() for s in sources],
        ["eins", "zwei"],
        ["one", "two"],
        str(tmp_path),
    )
    callback.on_epoch_end(0)
    callback.on_epoch_end(1)
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        str(tmp_path / "samples"), size_guidance={event_accumulator.TENSORS: 0}
    ).Reload()
    events = accumulator.Tensors("sample_translations")
    assert [e.step for e in events] == [0, 1]
    text = tf.make_ndarray(events[1].tensor_proto).item().decode()
    assert text == (
        "| source | reference | translation |\n|---|---|---|\n"
        "| eins | one | EINS |\n| zwei | two | ZWEI |"
    )


def test_step_scalars_match_an_independent_computation(tmp_path):
    """Every 4 optimizer steps over 2 epochs of 6 batches: the token-mean
    loss of the window (spanning the epoch boundary at step 8), the
    schedule's learning rate and the step's gradient norm, recomputed with
    a GradientTape on the (all but frozen) weights."""
    x, y = copy_task(rows=48)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = small_model()
    # A learning rate of ~1e-12: the weights, so the losses, stay put.
    schedule = training.TransformerSchedule(16, warmup_steps=5, scale=1e-10)
    training.compile_model(model, keras.optimizers.SGD(schedule), 0.1)
    training.prepare_for_fit(model, tf.distribute.get_strategy(), next(iter(dataset)))
    steps = callbacks.StepScalars(tmp_path / "steps", 4)
    model.fit(dataset, epochs=2, verbose=0, callbacks=[steps])
    loss = model.loss
    sums, counts, norms = [], [], []
    for batch_x, batch_y in dataset:
        with tf.GradientTape() as tape:
            token_losses = loss.token_losses(batch_y, model(batch_x))
            total = float(tf.reduce_sum(token_losses))
            count = float(np.sum(batch_y.numpy() != 0))
            mean = tf.reduce_sum(token_losses) / count
        gradients = tape.gradient(mean, model.trainable_variables)
        sums.append(total)
        counts.append(count)
        norms.append(float(tf.linalg.global_norm(gradients)))
    events = all_scalar_events(tmp_path / "steps")
    assert sorted(events) == [
        "gradient_norm", "learning_rate", "loss", "tokens_per_second"
    ]  # fmt: skip
    assert sorted(events["loss"]) == [4, 8, 12]
    for step in (4, 8, 12):
        batches = [(s - 1) % 6 for s in range(step - 3, step + 1)]
        expected = sum(sums[b] for b in batches) / sum(counts[b] for b in batches)
        np.testing.assert_allclose(events["loss"][step], expected, rtol=1e-5)
        np.testing.assert_allclose(
            events["gradient_norm"][step], norms[(step - 1) % 6], rtol=1e-4
        )
        np.testing.assert_allclose(
            events["learning_rate"][step],
            paper_lr(step, 16, 5, 1e-10),
            rtol=1e-5,
        )
        assert events["tokens_per_second"][step] > 0
