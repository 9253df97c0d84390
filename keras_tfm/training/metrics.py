"""The job's metrics, over non-padding target tokens (`keras.ops` only)."""

import keras
from keras import ops

from keras_tfm.constants import PADDING_ID


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
