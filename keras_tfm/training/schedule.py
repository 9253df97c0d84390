"""The learning-rate schedule of the paper, with an optional linear cooldown."""

import keras
from keras import ops


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
