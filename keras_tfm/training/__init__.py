"""Training pieces for `model.fit` under `tf.distribute`: strategy, schedule,
loss, metrics and callbacks. TensorFlow-specific by design."""

import os
import weakref

import keras
import tensorflow as tf
from keras import ops

from keras_tfm.constants import PADDING_ID


# --------------------------------------------------------------- precision
def cpu_has_native_bfloat16(cpuinfo=None):
    """Whether this CPU multiplies bfloat16 matrices in hardware.

    TensorFlow's oneDNN kernels use AMX (`amx_bf16`) or AVX-512 BF16
    (`avx512_bf16`). Without either, bfloat16 is slower than float32: on a
    2-core AMD EPYC without them, a 2048 x 2048 matmul ran at 74 GFLOP/s in
    bfloat16 against 87 in float32, and keras_tfm's `mixed_bfloat16`
    training step took 1.18 times as long as its float32 one
    (benchmarks/RESULTS.md).

    Args:
        cpuinfo: the text of `/proc/cpuinfo` (default: read it).

    Returns:
        True or False, or None where `/proc/cpuinfo` cannot be read (not
        Linux).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            flags.update(value.split())
    if not flags:
        return None
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def bfloat16_is_emulated():
    """True when this process has no GPU and its CPU lacks bfloat16 matrix
    instructions (`cpu_has_native_bfloat16`), so that `mixed_bfloat16` is
    likely slower than float32."""
    if tf.config.list_physical_devices("GPU"):
        return False
    return cpu_has_native_bfloat16() is False


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


def prepare_for_fit(model, strategy, example_batch, accumulate_steps=1):
    """Builds all model state up front and installs the training job's steps.

    `compile_model` must have been called under `strategy.scope()`. The
    train and test steps become `token_mean_steps`' (the loss is the mean
    over every token of the global batch, and XLA compiles what it can hold
    under the strategy). Under MultiWorkerMirroredStrategy, Keras 3's
    TensorFlow trainer also fails in two places (keras-team/keras#20585):

    1. its lazy build turns the first distributed batch into symbolic
       inputs, which a `PerReplica` value cannot become. Building the model,
       optimizer, compiled loss and metrics here, from a plain local batch,
       leaves that step nothing to do, so it is skipped;
    2. it averages each step's scalar logs with `strategy.reduce("MEAN",
       value, axis=0)`, which rejects scalars. Each log is returned as a
       length-1 vector instead, which that reduction averages over replicas
       to the same scalar the single-host path computes.

    With `accumulate_steps = N`, each batch is cut into N micro-batches that
    run one after another and make one optimizer step (see
    `token_mean_steps`).

    Returns:
        Where XLA runs: "none", "step" (the whole step) or "replica" (each
        replica's forward and backward pass; the gradient all-reduce and the
        optimizer update run outside XLA, which cannot compile collectives
        on the CPU).
    """
    x, y = example_batch
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
        y_pred = model(x, training=False)
        model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        model.compute_metrics(x, y, y_pred, sample_weight=None)
        for metric in model.metrics:
            metric.reset_state()
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    xla = "none"
    if model.jit_compile:
        xla = "step"
        if multi_worker or strategy.num_replicas_in_sync > 1:
            # XLA would compile the whole distributed step, collectives and
            # all, which it cannot do on the CPU or across devices.
            xla = "replica"
            model.jit_compile = False
    train_step, test_step = token_mean_steps(
        model, replica_xla=xla == "replica", accumulate_steps=accumulate_steps
    )
    _measure_gradient_norm(model, strategy)
    if multi_worker:
        model._maybe_symbolic_build = lambda *args, **kwargs: None
        train_step, test_step = _vector_logs(train_step), _vector_logs(test_step)
    model.train_step, model.test_step = train_step, test_step
    return xla


# The gradient-norm variable of each prepared model (kept off the model, so
# that its checkpoints do not change).
_GRADIENT_NORMS = weakref.WeakKeyDictionary()


def gradient_norm(model):
    """The global norm of the gradient of the last optimizer step of a model
    prepared by `prepare_for_fit` (summed over replicas, as applied), or
    None."""
    variable = _GRADIENT_NORMS.get(model)
    return None if variable is None else float(variable.numpy())


def _measure_gradient_norm(model, strategy):
    """Makes the optimizer record the norm of the gradients it applies.

    Measured right after the optimizer's own all-reduce (a private hook into
    Keras' TensorFlow optimizer), so that under several replicas it is the
    norm of the summed gradient, with no extra communication.
    """
    optimizer = model.optimizer
    reduce = getattr(optimizer, "_all_reduce_sum_gradients", None)
    if reduce is None:
        return
    with strategy.scope():
        norm = tf.Variable(
            0.0,
            trainable=False,
            name="gradient_norm",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def reduce_and_measure(grads_and_vars):
        reduced = reduce(grads_and_vars)
        gradients = [g for g, _ in reduced if g is not None]
        norm.assign(tf.cast(tf.linalg.global_norm(gradients), tf.float32))
        return reduced

    optimizer._all_reduce_sum_gradients = reduce_and_measure
    _GRADIENT_NORMS[model] = norm


def _vector_logs(step):
    def vector_logs(data):
        return {key: tf.reshape(value, (1,)) for key, value in step(data).items()}

    return vector_logs


def _sum_over_replicas(value):
    """`value` summed over the replicas of the current step (if there are any)."""
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        value = context.all_reduce(tf.distribute.ReduceOp.SUM, value)
    return value


def _token_count(labels):
    return tf.reduce_sum(tf.cast(tf.not_equal(labels, PADDING_ID), tf.float32))


def _scale(gradient, factor):
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(
            gradient.values * factor, gradient.indices, gradient.dense_shape
        )
    return gradient * factor


def token_mean_steps(model, replica_xla=False, accumulate_steps=1):
    """`(train_step, test_step)` whose loss is the mean over global tokens.

    Each replica computes the sum of its tokens' losses and its gradient;
    the gradient is divided by the number of non-padding tokens summed over
    all replicas and then summed over replicas (by the optimizer), so N
    replicas make exactly the update one device makes on the global batch,
    whatever the share of tokens each replica holds. The logged loss is the
    token mean too (each step weighted by its tokens).

    With `replica_xla`, the forward pass, the loss and the backward pass of
    each replica are one XLA-compiled function, and the token count's
    all-reduce, the gradients' all-reduce and the optimizer update run
    outside it.

    Gradient accumulation (`accumulate_steps = N > 1`): each replica cuts its
    batch into N micro-batches of consecutive rows and runs their forward and
    backward passes one after another (so only one micro-batch's activations
    live at a time), summing the gradients of their token-loss sums. The sum
    is divided by the tokens of the whole global batch, as above, and
    applied once. That is exactly the step of the whole batch at once,
    whatever the tokens of each micro-batch; averaging N per-micro-batch
    token means instead (what Keras' `gradient_accumulation_steps` does with
    per-batch losses) would weight a short micro-batch's tokens more. The
    learning-rate schedule counts optimizer steps.

    `model` must be compiled with `LabelSmoothedCrossEntropy`.
    """
    if isinstance(accumulate_steps, bool) or not (
        isinstance(accumulate_steps, int) and accumulate_steps >= 1
    ):
        raise ValueError(
            f"accumulate_steps must be an int >= 1, got {accumulate_steps}"
        )
    loss = model.loss
    if not isinstance(loss, LabelSmoothedCrossEntropy):
        raise ValueError(
            "token_mean_steps needs a model compiled with LabelSmoothedCrossEntropy"
        )

    def forward(x, y, training):
        y_pred = model(x, training=training)
        return tf.reduce_sum(loss.token_losses(y, y_pred)), y_pred

    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            loss_sum, y_pred = forward(x, y, training=True)
            scaled = model.optimizer.scale_loss(loss_sum)
        return loss_sum, tape.gradient(scaled, model.trainable_variables), y_pred

    def forward_only(x, y):
        return forward(x, y, training=False)

    if replica_xla:
        forward_backward = tf.function(forward_backward, jit_compile=True)
        forward_only = tf.function(forward_only, jit_compile=True)

    def track_loss(loss_sum, tokens):
        model._loss_tracker.update_state(
            loss_sum / tf.maximum(tokens, 1.0), sample_weight=tokens
        )

    def train_step(data):
        x, y = data[0], data[1]
        tokens = _token_count(y)
        global_tokens = tf.maximum(_sum_over_replicas(tokens), 1.0)
        if accumulate_steps == 1:
            loss_sum, gradients, y_pred = forward_backward(x, y)
            model.compute_metrics(x, y, y_pred)
        else:
            loss_sum, gradients = accumulated(x, y)
        gradients = [_scale(g, 1.0 / global_tokens) for g in gradients]
        # Every op of the update waits for the batch. Otherwise the step
        # counter's increment, which depends on no gradient, still runs in
        # the call that finds the data exhausted at the end of an epoch.
        with tf.control_dependencies([global_tokens]):
            model.optimizer.apply(gradients, model.trainable_variables)
        track_loss(loss_sum, tokens)
        # Read after every update: each step's logs include its own batch.
        return model.get_metrics_result()

    def accumulated(x, y):
        rows = tf.shape(y)[0]
        size = (rows + accumulate_steps - 1) // accumulate_steps
        loss_sum, gradients = 0.0, None
        for index in range(accumulate_steps):
            start = tf.minimum(index * size, rows)
            end = tf.minimum(start + size, rows)
            # After the previous micro-batch's backward pass: one at a time.
            with tf.control_dependencies(gradients or []):
                part = slice(start, end)
                x_part = tf.nest.map_structure(lambda t, part=part: t[part], x)
                y_part = y[part]
            part_loss, part_gradients, y_pred = forward_backward(x_part, y_part)
            part_gradients = [tf.convert_to_tensor(g) for g in part_gradients]
            loss_sum += part_loss
            gradients = (
                part_gradients
                if gradients is None
                else [a + b for a, b in zip(gradients, part_gradients)]
            )
            # The metrics are sums over tokens: updated per micro-batch.
            model.compute_metrics(x_part, y_part, y_pred)
        return loss_sum, gradients

    def test_step(data):
        x, y = data[0], data[1]
        loss_sum, y_pred = forward_only(x, y)
        track_loss(loss_sum, _token_count(y))
        model.compute_metrics(x, y, y_pred)
        return model.get_metrics_result()

    return train_step, test_step


def distribute_options(dataset, strategy, sharded=False):
    """How `dataset` is split across workers: by element (DATA), or not at
    all where the pipeline reads only this worker's share (`sharded`)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
            if sharded
            else tf.data.experimental.AutoShardPolicy.DATA
        )
        dataset = dataset.with_options(options)
    return dataset


def input_shard(strategy):
    """`(num_workers, index)` of this process's input pipeline: the chief
    (if any) first, then the workers, as MultiWorkerMirroredStrategy counts
    them; `(1, 0)` for a single host."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1, 0
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    if resolver.task_type == "chief":
        return chiefs + workers, 0
    return chiefs + workers, chiefs + int(resolver.task_id)


def optimizer_steps(model):
    """The optimizer steps `model` has made (also for a distributed counter,
    which `int()` does not take)."""
    iterations = model.optimizer.iterations
    return int(getattr(iterations, "value", iterations).numpy())


class MaxSteps(keras.callbacks.Callback):
    """Stops training once the optimizer has made `max_steps` steps (counted
    by its iteration counter, so a resumed run stops at the same step)."""

    def __init__(self, max_steps):
        super().__init__()
        self.max_steps = max_steps

    def on_train_batch_end(self, batch, logs=None):
        if optimizer_steps(self.model) >= self.max_steps:
            self.model.stop_training = True


# ---------------------------------------------------------------- schedule
@keras.saving.register_keras_serializable(package="keras_tfm")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lrate = scale * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5).

    Equation (3) of the paper: linear warmup for `warmup_steps`, then decay
    with the inverse square root of the step. `step` counts from 1 (the
    optimizer's iteration counter plus one). `scale` multiplies the whole
    curve (1.0 in the paper).

    With `cooldown_steps = C` and `total_steps = T`, the last C steps of a
    T-step run also scale the rate down linearly, by `(T + 1 - step) / C`:
    1 at step `T - C + 1`, `1 / C` at step T, 0 after it. The inverse
    square root alone leaves the rate at about half its peak when a short
    run ends; taking it towards zero at the end is not in the paper.
    """

    def __init__(
        self, d_model, warmup_steps=4000, scale=1.0, total_steps=None, cooldown_steps=0
    ):
        if d_model < 1 or warmup_steps < 1 or scale <= 0:
            raise ValueError(
                "TransformerSchedule: d_model and warmup_steps must be >= 1 and "
                f"scale > 0, got {d_model}, {warmup_steps}, {scale}"
            )
        if cooldown_steps < 0 or (
            cooldown_steps and (total_steps is None or total_steps < cooldown_steps)
        ):
            raise ValueError(
                "TransformerSchedule: cooldown_steps must be >= 0 and, when set, "
                f"at most total_steps; got cooldown_steps={cooldown_steps}, "
                f"total_steps={total_steps}"
            )
        self.d_model = int(d_model)
        self.warmup_steps = int(warmup_steps)
        self.scale = float(scale)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.cooldown_steps = int(cooldown_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        warmup = ops.cast(self.warmup_steps, "float32")
        rate = (
            self.scale
            * (self.d_model**-0.5)
            * ops.minimum(ops.rsqrt(step), step * ops.power(warmup, -1.5))
        )
        if self.cooldown_steps:
            remaining = (self.total_steps + 1.0 - step) / self.cooldown_steps
            rate = rate * ops.clip(remaining, 0.0, 1.0)
        return rate

    def get_config(self):
        return {
            "d_model": self.d_model,
            "warmup_steps": self.warmup_steps,
            "scale": self.scale,
            "total_steps": self.total_steps,
            "cooldown_steps": self.cooldown_steps,
        }


@keras.saving.register_keras_serializable(package="keras_tfm")
class Adam(keras.optimizers.Adam):
    """`keras.optimizers.Adam`, updating each variable with one fused kernel.

    Keras' TensorFlow Adam writes the update of every variable as about
    twenty small ops (the two moments, the bias corrections, the step), and
    recomputes the bias corrections for each variable. This one computes
    the step's scalars once and hands each variable to TensorFlow's
    `ResourceApplyAdam` kernel, which does the same arithmetic in one pass:

        alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
        w -= alpha * m / (sqrt(v) + epsilon)

    Everything else is Keras' (arguments, clipping, weight decay, gradient
    accumulation, loss scaling, `tf.distribute`, saving); with `amsgrad`
    the update is Keras' own. An embedding's `IndexedSlices` gradient is
    summed per row before the update, so a row used twice in a batch gets
    the square of its summed gradient in `v`, as Adam defines it (Keras'
    update squares the two slices separately and adds the squares). The
    `small` training step on the 2-core CPU is 6 to 12% faster with it
    (`benchmarks/RESULTS.md`).
    """

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The scalars of this step, per (dtype, device), shared by the
        # variables' updates.
        self._step_scalars = {}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_scalars = None

    def update_step(self, gradient, variable, learning_rate):
        scalars = getattr(self, "_step_scalars", None)
        if scalars is None or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        dtype = variable.dtype
        key = (dtype, variable.device)
        if key not in scalars:
            step = tf.cast(self.iterations + 1, dtype)
            beta_1 = tf.cast(self.beta_1, dtype)
            beta_2 = tf.cast(self.beta_2, dtype)
            scalars[key] = {
                "beta1_power": tf.pow(beta_1, step),
                "beta2_power": tf.pow(beta_2, step),
                "lr": tf.cast(learning_rate, dtype),
                "beta1": beta_1,
                "beta2": beta_2,
                "epsilon": tf.cast(self.epsilon, dtype),
            }
        # An embedding's gradient arrives as IndexedSlices; Keras' update
        # makes it dense too (every row's moments decay at every step).
        gradient = tf.cast(tf.convert_to_tensor(gradient), dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=momentum.value.handle,
            v=velocity.value.handle,
            grad=gradient,
            **scalars[key],
        )


def make_optimizer(
    d_model,
    warmup_steps=4000,
    scale=1.0,
    clipnorm=None,
    total_steps=None,
    cooldown_steps=0,
):
    """Adam(beta_1=0.9, beta_2=0.98, epsilon=1e-9) on the paper's schedule
    (with the optional linear cooldown of `TransformerSchedule`)."""
    return Adam(
        learning_rate=TransformerSchedule(
            d_model, warmup_steps, scale, total_steps, cooldown_steps
        ),
        beta_1=0.9,
        beta_2=0.98,
        epsilon=1e-9,
        clipnorm=clipnorm,
    )


# ---------------------------------------------------------------- loss
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
        tokens = _sum_over_replicas(_token_count(y_true))
        return self.token_losses(y_true, y_pred) / tf.maximum(tokens, 1.0)

    def token_losses(self, y_true, y_pred):
        """The loss of each target token, 0 at padding: float32 `(batch, length)`."""
        labels = tf.cast(y_true, tf.int32)
        log_probs = tf.nn.log_softmax(tf.cast(y_pred, tf.float32), axis=-1)
        nll = -tf.gather(log_probs, tf.maximum(labels, 0), batch_dims=2)
        loss = nll
        if self.label_smoothing:
            uniform = -tf.reduce_mean(log_probs, axis=-1)
            loss = (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform
        return loss * tf.cast(tf.not_equal(labels, PADDING_ID), tf.float32)

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
        mask = ops.cast(ops.not_equal(labels, PADDING_ID), "float32")
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
                ops.cast(
                    ops.not_equal(ops.cast(y_true, "int32"), PADDING_ID), "float32"
                )
            )
        )

    def result(self):
        # A copy, not the variable: fit keeps the epoch's results in its logs
        # while validation resets and refills this same variable.
        return ops.copy(self.count)

    def reset_state(self):
        self.count.assign(0.0)


def compile_model(model, optimizer, label_smoothing=0.1, jit_compile=False):
    """Compiles `model` with the job's loss (label-smoothed, over non-padding
    tokens), metrics (masked accuracy, token count) and `optimizer`."""
    model.compile(
        optimizer=optimizer,
        loss=LabelSmoothedCrossEntropy(label_smoothing),
        metrics=[MaskedAccuracy(), TokenCount()],
        jit_compile=jit_compile,
    )
    return model


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
            (total / len(paths)).astype(mine.dtype) if mine.dtype.kind == "f" else mine
            for total, mine in zip(sums, current)
        ]
    )
