"""Training pieces for `model.fit` under `tf.distribute`: strategy, schedule,
loss, metrics and callbacks. TensorFlow-specific by design."""

import json
import math
import os
import time

import keras
import tensorflow as tf
from keras import ops

PAD_ID = 0


# ---------------------------------------------------------------- strategy
def make_strategy(name="auto"):
    """Returns the `tf.distribute` strategy called `name`.

    - `auto`: MirroredStrategy over all GPUs when there are several, else the
      default (single-device) strategy.
    - `one_device`: the first GPU, or the CPU.
    - `mirrored`: MirroredStrategy over all GPUs, or over all logical CPU
      devices when there is no GPU (tests split the CPU into several).
    - `multi_worker`: MultiWorkerMirroredStrategy, cluster from `TF_CONFIG`.
    """
    if name == "multi_worker":
        # Must come before anything initialises the TensorFlow runtime.
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi_worker needs the TF_CONFIG variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    raise ValueError(
        f"unknown strategy {name!r}; choose auto, one_device, mirrored or multi_worker"
    )


def prepare_for_fit(model, strategy, example_batch):
    """Builds all model state up front and adapts `fit` to the strategy.

    Under MultiWorkerMirroredStrategy, Keras 3's TensorFlow trainer fails in
    two places (keras-team/keras#20585):
    1. its lazy build turns the first distributed batch into symbolic
       inputs, which a `PerReplica` value cannot become. Building the model,
       optimizer, compiled loss and metrics here, from a plain local batch,
       leaves that step nothing to do, so it is skipped;
    2. it averages each step's scalar logs with `strategy.reduce("MEAN",
       value, axis=0)`, which rejects scalars. Each log is returned as a
       length-1 vector instead, which that reduction averages over replicas
       to the same scalar the single-host path computes.
    """
    x, y = example_batch
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
        y_pred = model(x, training=False)
        model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        model.compute_metrics(x, y, y_pred, sample_weight=None)
        for metric in model.metrics:
            metric.reset_state()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def vector_logs(data, step=step):
            return {key: tf.reshape(value, (1,)) for key, value in step(data).items()}

        setattr(model, name, vector_logs)


def distribute_options(dataset, strategy):
    """Shards by data (not by files) across workers: the pipeline is in memory."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        dataset = dataset.with_options(options)
    return dataset


# ---------------------------------------------------------------- schedule
@keras.saving.register_keras_serializable(package="keras_tfm")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lrate = scale * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5).

    Equation (3) of the paper: linear warmup for `warmup_steps`, then decay
    with the inverse square root of the step. `step` counts from 1 (the
    optimizer's iteration counter plus one). `scale` multiplies the whole
    curve (1.0 in the paper).
    """

    def __init__(self, d_model, warmup_steps=4000, scale=1.0):
        if d_model < 1 or warmup_steps < 1 or scale <= 0:
            raise ValueError(
                "TransformerSchedule: d_model and warmup_steps must be >= 1 and "
                f"scale > 0, got {d_model}, {warmup_steps}, {scale}"
            )
        self.d_model = int(d_model)
        self.warmup_steps = int(warmup_steps)
        self.scale = float(scale)

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        warmup = ops.cast(self.warmup_steps, "float32")
        return (
            self.scale
            * (self.d_model**-0.5)
            * ops.minimum(ops.rsqrt(step), step * ops.power(warmup, -1.5))
        )

    def get_config(self):
        return {
            "d_model": self.d_model,
            "warmup_steps": self.warmup_steps,
            "scale": self.scale,
        }


def make_optimizer(d_model, warmup_steps=4000, scale=1.0, clipnorm=None):
    """Adam(beta_1=0.9, beta_2=0.98, epsilon=1e-9) on the paper's schedule."""
    return keras.optimizers.Adam(
        learning_rate=TransformerSchedule(d_model, warmup_steps, scale),
        beta_1=0.9,
        beta_2=0.98,
        epsilon=1e-9,
        clipnorm=clipnorm,
    )


# ---------------------------------------------------------------- loss
def _global_token_count(labels):
    """Non-padding labels summed over every replica of the current step."""
    count = tf.reduce_sum(tf.cast(tf.not_equal(labels, PAD_ID), tf.float32))
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return count


@keras.saving.register_keras_serializable(package="keras_tfm")
class LabelSmoothedCrossEntropy(keras.losses.Loss):
    """Cross-entropy against smoothed labels, averaged over non-padding tokens.

    The target distribution puts `1 - label_smoothing` on the true token and
    spreads `label_smoothing` uniformly over the vocabulary (section 5.4).

    Under a `tf.distribute` strategy the mean is over the tokens of the whole
    global batch: each replica divides its sum by the token count summed
    over all replicas, and the gradients of the replicas are summed. With the
    "sum" reduction Keras does not scale the loss by 1/num_replicas again,
    so the update equals one device processing the global batch, even when
    replicas hold different numbers of real tokens.
    """

    def __init__(
        self, label_smoothing=0.1, name="label_smoothed_cross_entropy", **kwargs
    ):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        if not 0 <= label_smoothing < 1:
            raise ValueError(
                f"label_smoothing must be in [0, 1), got {label_smoothing}"
            )
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = tf.cast(y_true, tf.int32)
        log_probs = tf.nn.log_softmax(tf.cast(y_pred, tf.float32), axis=-1)
        nll = -tf.gather(log_probs, tf.maximum(labels, 0), batch_dims=2)
        loss = nll
        if self.label_smoothing:
            uniform = -tf.reduce_mean(log_probs, axis=-1)
            loss = (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform
        mask = tf.cast(tf.not_equal(labels, PAD_ID), tf.float32)
        return loss * mask / tf.maximum(_global_token_count(labels), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"label_smoothing": self.label_smoothing})
        return config


# ---------------------------------------------------------------- metrics
@keras.saving.register_keras_serializable(package="keras_tfm")
class MaskedAccuracy(keras.metrics.Metric):
    """Share of non-padding target tokens whose argmax prediction is right."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="correct"
        )
        self.total = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="total"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(y_true, "int32")
        mask = ops.cast(ops.not_equal(labels, PAD_ID), "float32")
        hits = ops.cast(
            ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), labels), "float32"
        )
        self.correct.assign_add(ops.sum(hits * mask))
        self.total.assign_add(ops.sum(mask))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


@keras.saving.register_keras_serializable(package="keras_tfm")
class TokenCount(keras.metrics.Metric):
    """Non-padding target tokens seen since the last reset (per epoch)."""

    def __init__(self, name="tokens", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="count"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.count.assign_add(
            ops.sum(
                ops.cast(ops.not_equal(ops.cast(y_true, "int32"), PAD_ID), "float32")
            )
        )

    def result(self):
        # A copy, not the variable: fit keeps the epoch's results in its logs
        # while validation resets and refills this same variable.
        return ops.copy(self.count)

    def reset_state(self):
        self.count.assign(0.0)


def compile_model(model, optimizer, label_smoothing=0.1, jit_compile=False):
    model.compile(
        optimizer=optimizer,
        loss=LabelSmoothedCrossEntropy(label_smoothing),
        metrics=[MaskedAccuracy(), TokenCount()],
        jit_compile=jit_compile,
    )
    return model


# ---------------------------------------------------------------- callbacks
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


def average_checkpoints(model, paths):
    """Sets `model`'s weights to the mean of the weights saved in `paths`.

    The paper evaluates its base models with the average of the last 5
    checkpoints (section 6.1). Each path is a `.keras` file of the same
    architecture; floating-point weights are averaged in float64 and cast
    back, any others (e.g. random seed states) are left as `model` has them.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    sums = None
    for path in paths:
        weights = keras.saving.load_model(path, compile=False).get_weights()
        if sums is None:
            sums = [w.astype("float64") for w in weights]
        else:
            if len(weights) != len(sums):
                raise ValueError(f"{path}: not the same model as {paths[0]}")
            sums = [s + w for s, w in zip(sums, weights)]
    current = model.get_weights()
    if len(current) != len(sums):
        raise ValueError(f"{paths[0]}: not the same model as the one given")
    model.set_weights(
        [
            (total / len(paths)).astype(mine.dtype)
            if mine.dtype.kind == "f"
            else mine
            for total, mine in zip(sums, current)
        ]
    )


def make_callbacks(run_dir, *, patience=None, time_limit=None, extra=()):
    """The standard callback list of a run rooted at `run_dir`.

    `time_limit` (seconds) adds a `TimeLimit`.
    """
    nan_guard = StopOnNaN()
    callbacks = [
        nan_guard,
        *([TimeLimit(time_limit)] if time_limit else []),
        ThroughputAndLearningRate(),
        *extra,
        keras.callbacks.TensorBoard(
            log_dir=os.path.join(run_dir, "logs"), update_freq="epoch"
        ),
        keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "checkpoints", "epoch_{epoch:03d}.keras")
        ),
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
    ]
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    return callbacks, nan_guard
