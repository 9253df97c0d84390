"""Checkpoint averaging (section 6.1 of the paper)."""

import keras


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
