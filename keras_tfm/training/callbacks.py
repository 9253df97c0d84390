"""Counting optimizer steps, and stopping `fit` after a number of them."""

import keras


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
