"""Callbacks of the training job: throughput, time limit, NaN stop, samples."""

import json
import math
import os
import time

import keras
import tensorflow as tf


class ThroughputAndLearningRate(keras.callbacks.Callback):
    """Adds `learning_rate` and `tokens_per_second` to each epoch's logs.

    Placed before the TensorBoard callback, so both become scalars there.
    Time is measured from the first to the last step of the epoch, which
    leaves out the one-off tracing of the first step.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last = None
        self._tokens_at_start = 0.0

    def on_train_batch_end(self, batch, logs=None):
        tokens = float((logs or {}).get("tokens", 0.0))
        if self._start is None:
            self._start = time.perf_counter()
            self._tokens_at_start = tokens
            return
        self._last = time.perf_counter()
        self._tokens = tokens

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        optimizer = self.model.optimizer
        lr = optimizer.learning_rate
        if isinstance(
            optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule
        ):
            lr = optimizer._learning_rate(optimizer.iterations)
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
        if self._last is not None and self._last > self._start:
            logs["tokens_per_second"] = (self._tokens - self._tokens_at_start) / (
                self._last - self._start
            )


class TimeLimit(keras.callbacks.Callback):
    """Ends training before an epoch that could overrun a wall-clock budget.

    After each epoch, training stops if the time since `fit` began plus the
    slowest epoch so far would exceed `seconds`; the epoch that ends the run
    is always a whole one, checkpointed as usual. Judging by the slowest
    epoch rather than the last keeps a noisy machine inside the budget
    unless an epoch is slower than every one before it.

    Args:
        seconds: the budget for this `fit` call, validation and callbacks
            included.
    """

    def __init__(self, seconds):
        super().__init__()
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.seconds = float(seconds)
        self.stopped_after_epoch = None

    def on_train_begin(self, logs=None):
        self._train_start = time.perf_counter()
        self._slowest = 0.0
        self.stopped_after_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self._slowest = max(self._slowest, now - self._epoch_start)
        if (now - self._train_start) + self._slowest > self.seconds:
            self.model.stop_training = True
            self.stopped_after_epoch = epoch + 1


class StopOnNaN(keras.callbacks.Callback):
    """Stops training with a clear message when the loss is NaN or infinite."""

    def __init__(self):
        super().__init__()
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.message = (
                f"training stopped: the loss became {float(loss)} at step "
                f"{batch + 1} of epoch {self._epoch + 1}; lower the learning rate "
                "scale, raise warmup_steps, or train in float32"
            )
            print(self.message, flush=True)
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


class SampleTranslations(keras.callbacks.Callback):
    """Writes a few translations as TensorBoard text summaries every epoch."""

    def __init__(self, translate_fn, sources, references, log_dir):
        super().__init__()
        self.translate_fn = translate_fn
        self.sources = list(sources)
        self.references = list(references)
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, "samples")
            )
        hypotheses = self.translate_fn(self.sources)
        rows = ["| source | reference | translation |", "|---|---|---|"]
        for source, reference, hypothesis in zip(
            self.sources, self.references, hypotheses
        ):
            rows.append(f"| {source} | {reference} | {hypothesis} |")
        with self._writer.as_default():
            tf.summary.text("sample_translations", "\n".join(rows), step=epoch)
        self._writer.flush()


def backup_epoch(backup_dir):
    """The number of finished epochs recorded by BackupAndRestore, or None."""
    path = os.path.join(backup_dir, "training_metadata.json")
    try:
        with open(path) as handle:
            # Keras stores the finished-epoch count there (its epoch index + 1).
            return int(json.load(handle)["epoch"])
    except (OSError, ValueError, KeyError):
        return None


def make_callbacks(run_dir, *, patience=None, time_limit=None, extra=()):
    """The standard callback list of a run writing into `run_dir`.

    `run_dir` is a `RunDirectory` (or a path to one): TensorBoard logs,
    one checkpoint per epoch and the `BackupAndRestore` state go to its
    places. `time_limit` (seconds) adds a `TimeLimit`; `patience` early
    stopping on the validation loss.
    """
    from keras_tfm.run_dir import RunDirectory

    if not isinstance(run_dir, RunDirectory):
        run_dir = RunDirectory(run_dir)
    nan_guard = StopOnNaN()
    callbacks = [
        nan_guard,
        *([TimeLimit(time_limit)] if time_limit else []),
        ThroughputAndLearningRate(),
        *extra,
        keras.callbacks.TensorBoard(log_dir=str(run_dir.logs), update_freq="epoch"),
        keras.callbacks.ModelCheckpoint(run_dir.checkpoint_pattern()),
        keras.callbacks.BackupAndRestore(str(run_dir.backup)),
    ]
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    return callbacks, nan_guard
