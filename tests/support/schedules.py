"""The paper's learning rate, computed independently of keras_tfm."""

import numpy as np


def paper_lr(iterations, d_model, warmup, scale=1.0):
    """Equation (3) of the paper in float64 after `iterations` optimizer
    steps (step = iteration + 1), times `scale`."""
    step = np.asarray(iterations, dtype=np.float64) + 1.0
    return scale * d_model**-0.5 * np.minimum(step**-0.5, step * warmup**-1.5)


def cooled_down_lr(iterations, d_model, warmup, total_steps, cooldown_steps):
    """`paper_lr` times the linear cooldown to 0 over the last
    `cooldown_steps` of `total_steps`."""
    step = np.asarray(iterations, dtype=np.float64) + 1.0
    cooldown = np.clip((total_steps + 1.0 - step) / cooldown_steps, 0.0, 1.0)
    return paper_lr(iterations, d_model, warmup) * cooldown
