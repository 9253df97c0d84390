"""Callbacks of the training job: throughput, time limit, NaN stop, samples."""

import json
import math
import os
import time

import keras
import tensorflow as tf

from keras_tfm.job.training_sections import MONITORED, TrainingConfig


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
        logs["learning_rate"] = current_learning_rate(self.model.optimizer)
        if self._last is not None and self._last > self._start:
            logs["tokens_per_second"] = (self._tokens - self._tokens_at_start) / (
                self._last - self._start
            )


def current_learning_rate(optimizer):
    """The learning rate the optimizer's next step uses, as a float."""
    lr = optimizer.learning_rate
    if isinstance(
        optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule
    ):
        lr = optimizer._learning_rate(optimizer.iterations)
    return float(keras.ops.convert_to_numpy(lr))


class StepScalars(keras.callbacks.Callback):
    """TensorBoard scalars every `every` optimizer steps, not only per epoch.

    Written to `log_dir` (the run "steps" in TensorBoard) at the optimizer's
    step count: `loss` (the token mean over the steps since the last point),
    `learning_rate` (of the next step), `tokens_per_second` (target tokens
    over training time since the last point, validation and saving left
    out) and `gradient_norm` (the global
    norm of the last step's gradient, for models prepared by
    `keras_tfm.training.prepare_for_fit`). The loss comes from the epoch's
    running token mean and token count that each step's logs carry, so it
    costs no extra computation.
    """

    def __init__(self, log_dir, every):
        super().__init__()
        self.log_dir, self.every = str(log_dir), int(every)
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)
        # Totals of the finished epochs, so that a window may span two.
        self._done_loss = self._done_tokens = 0.0
        self._loss_sum = self._tokens = 0.0  # totals at the last point
        self._epoch_loss = self._epoch_tokens = 0.0
        self._time, self._paused = time.perf_counter(), None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_loss = self._epoch_tokens = 0.0
        if self._paused is not None:  # validation and saving are not training
            self._time += time.perf_counter() - self._paused
            self._paused = None

    def on_epoch_end(self, epoch, logs=None):
        self._done_loss += self._epoch_loss
        self._done_tokens += self._epoch_tokens
        self._paused = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        from keras_tfm.training import gradient_norm, optimizer_steps

        if not logs:
            return
        # The epoch's running token mean and token count so far.
        self._epoch_tokens = float(logs.get("tokens", 0.0))
        self._epoch_loss = float(logs["loss"]) * self._epoch_tokens
        step = optimizer_steps(self.model)
        if step % self.every:
            return
        loss_sum = self._done_loss + self._epoch_loss
        tokens = self._done_tokens + self._epoch_tokens
        now = time.perf_counter()
        new_tokens = tokens - self._tokens
        values = {"learning_rate": current_learning_rate(self.model.optimizer)}
        if new_tokens > 0:
            values["loss"] = (loss_sum - self._loss_sum) / new_tokens
            values["tokens_per_second"] = new_tokens / max(now - self._time, 1e-9)
        norm = gradient_norm(self.model)
        if norm is not None:
            values["gradient_norm"] = norm
        with self._writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)
        self._loss_sum, self._tokens, self._time = loss_sum, tokens, now

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


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


class AttentionImages(keras.callbacks.Callback):
    """Cross-attention maps of fixed sentences as TensorBoard images.

    After each epoch, each sentence is translated greedily and every head of
    every decoder layer gets its cross-attention map, labelled with the
    subword pieces (`keras_tfm.job.attention_maps.draw_head`), written as
    the image `attention/sentence_N/layer_L/head_H` at the epoch. One head
    per image keeps the labels readable at TensorBoard's card size.
    """

    def __init__(self, src_tokenizer, tgt_tokenizer, sentences, log_dir):
        super().__init__()
        self.tokenizers = (src_tokenizer, tgt_tokenizer)
        self.sentences, self.log_dir = list(sentences), str(log_dir)
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()

    def on_epoch_end(self, epoch, logs=None):
        from keras_tfm.job.attention_maps import draw_head, sentence_maps

        with self._writer.as_default(step=epoch):
            for number, sentence in enumerate(self.sentences, start=1):
                weights, source, target, translation = sentence_maps(
                    self.model, *self.tokenizers, sentence
                )
                for layer, layer_weights in enumerate(weights, start=1):
                    for head, head_weights in enumerate(layer_weights, start=1):
                        png = draw_head(
                            head_weights,
                            source,
                            target,
                            title=f"{translation} (layer {layer}, head {head})",
                        )
                        tf.summary.image(
                            f"attention/sentence_{number}/layer_{layer}/head_{head}",
                            tf.image.decode_png(png, channels=3)[None],
                        )
        self._writer.flush()


class TensorBoardWithStepMarkers(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, whose profiled batches are marked as
    training steps for the Profile dashboard.

    Keras wraps each profiled batch in a profiler trace event without the
    step-marker flag, so the Profile dashboard's overview finds no steps
    ("No step marker observed"). This marks each as the step `train` with
    its number (counted from 1 in the `fit` call), as TensorFlow's profiler
    guide does.
    """

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch, logs)
        # Keras keeps the batch's trace here, and ends it after the batch.
        if getattr(self, "_batch_trace_context", None) is not None:
            self._batch_trace_context.__exit__(None, None, None)
            marker = tf.profiler.experimental.Trace(
                "train", step_num=self._global_train_batch, _r=1
            )
            marker.__enter__()
            self._batch_trace_context = marker


def backup_epoch(backup_dir):
    """The number of finished epochs recorded by BackupAndRestore, or None."""
    path = os.path.join(backup_dir, "training_metadata.json")
    try:
        with open(path) as handle:
            # Keras stores the finished-epoch count there (its epoch index + 1).
            return int(json.load(handle)["epoch"])
    except (OSError, ValueError, KeyError):
        return None


def make_callbacks(
    run_dir,
    *,
    patience=None,
    time_limit=None,
    extra=(),
    log_every_steps=0,
    early_stopping_metric=TrainingConfig.early_stopping_metric,
    profile_steps=(),
):
    """The standard callback list of a run writing into `run_dir`.

    `run_dir` is a `RunDirectory` (or a path to one): TensorBoard logs,
    one checkpoint per epoch and the `BackupAndRestore` state go to its
    places. `time_limit` (seconds) adds a `TimeLimit`; `patience` early
    stopping on the validation `early_stopping_metric` ("loss", or "bleu",
    which a `ValidationScores` in `extra` adds); `log_every_steps`
    `StepScalars` under `logs/steps`; `profile_steps` `(first, last)` a
    profiler trace of those training batches (counted from 1 in this `fit`
    call) under `logs/train/plugins/profile`.
    """
    from keras_tfm.job.run_directory import RunDirectory

    if not isinstance(run_dir, RunDirectory):
        run_dir = RunDirectory(run_dir)
    nan_guard = StopOnNaN()
    steps = []
    if log_every_steps:
        steps.append(StepScalars(run_dir.logs / "steps", log_every_steps))
    callbacks = [
        nan_guard,
        ThroughputAndLearningRate(),
        *steps,
        *extra,
        TensorBoardWithStepMarkers(
            log_dir=str(run_dir.logs),
            update_freq="epoch",
            profile_batch=tuple(profile_steps) or 0,
        ),
        keras.callbacks.ModelCheckpoint(run_dir.checkpoint_pattern()),
        keras.callbacks.BackupAndRestore(str(run_dir.backup)),
    ]
    if patience:
        monitor, mode = MONITORED[early_stopping_metric]
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=patience,
                restore_best_weights=True,
            )
        )
    if time_limit:
        # Last: an epoch's time then includes every other callback's work
        # (validation scores, checkpoints).
        callbacks.append(TimeLimit(time_limit))
    return callbacks, nan_guard
