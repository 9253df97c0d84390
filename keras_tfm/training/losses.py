"""The job's loss: label-smoothed cross-entropy over the non-padding tokens
of the global batch.

It computes with TensorFlow (`tf.distribute`'s replica context), imported
when it runs, so that loading a saved model does not need it.
"""

import keras

from keras_tfm.constants import PADDING_ID


def sum_over_replicas(value):
    """`value` summed over the replicas of the current step (if there are any)."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        value = context.all_reduce(tf.distribute.ReduceOp.SUM, value)
    return value


def token_count(labels):
    """The non-padding tokens of `labels`, as a float32 scalar."""
    import tensorflow as tf

    return tf.reduce_sum(tf.cast(tf.not_equal(labels, PADDING_ID), tf.float32))


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
        import tensorflow as tf

        tokens = sum_over_replicas(token_count(y_true))
        return self.token_losses(y_true, y_pred) / tf.maximum(tokens, 1.0)

    def token_losses(self, y_true, y_pred):
        """The loss of each target token, 0 at padding: float32 `(batch, length)`."""
        import tensorflow as tf

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
