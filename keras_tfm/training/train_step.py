"""The job's compiled model and training step: the loss is the mean over
every target token of the global batch, with optional gradient accumulation
and a record of each step's gradient norm."""

import weakref

import tensorflow as tf

from keras_tfm.training.losses import (
    LabelSmoothedCrossEntropy,
    sum_over_replicas,
    token_count,
)
from keras_tfm.training.metrics import MaskedAccuracy, TokenCount
from keras_tfm.training.multi_worker_fit import patch_for_multi_worker
from keras_tfm.training.strategy import is_multi_worker


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


def prepare_for_fit(model, strategy, example_batch, accumulate_steps=1):
    """Builds all model state up front and installs the training job's steps.

    `compile_model` must have been called under `strategy.scope()`. The
    train and test steps become `token_mean_steps`' (the loss is the mean
    over every token of the global batch, and XLA compiles what it can hold
    under the strategy). Building the model, optimizer, compiled loss and
    metrics here, from a plain local batch, is also what lets `fit` run
    under MultiWorkerMirroredStrategy, with the patches of
    `keras_tfm.training.multi_worker_fit` (keras-team/keras#20585).

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
    multi_worker = is_multi_worker(strategy)
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
        train_step, test_step = patch_for_multi_worker(model, train_step, test_step)
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
        tokens = token_count(y)
        global_tokens = tf.maximum(sum_over_replicas(tokens), 1.0)
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
        track_loss(loss_sum, token_count(y))
        model.compute_metrics(x, y, y_pred)
        return model.get_metrics_result()

    return train_step, test_step
