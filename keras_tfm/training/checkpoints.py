"""Checkpoint averaging (section 6.1 of the paper)."""

import keras


def read_weights(path):
    """The weights saved in the `.keras` file `path`, as NumPy arrays in
    `model.get_weights()` order."""
    return keras.saving.load_model(path, compile=False).get_weights()


def set_mean_weights(model, weight_sets, names=None):
    """Sets `model`'s weights to the mean of `weight_sets`.

    Args:
        model: the model to set.
        weight_sets: lists of arrays, each as `read_weights` returns them.
        names: what each set came from, for errors (default: its index).

    Floating-point weights are averaged in float64 and cast back; any others
    (e.g. random seed states) are left as `model` has them.
    """
    if not weight_sets:
        raise ValueError("no checkpoints to average")
    names = list(names) if names is not None else list(range(len(weight_sets)))
    current = model.get_weights()
    sums = [w.astype("float64") for w in weight_sets[0]]
    for name, weights in zip(names[1:], weight_sets[1:]):
        if len(weights) != len(sums):
            raise ValueError(f"{name}: not the same model as {names[0]}")
        sums = [s + w for s, w in zip(sums, weights)]
    if len(current) != len(sums):
        raise ValueError(f"{names[0]}: not the same model as the one given")
    model.set_weights(
        [
            (total / len(weight_sets)).astype(mine.dtype)
            if mine.dtype.kind == "f"
            else mine
            for total, mine in zip(sums, current)
        ]
    )


def average_checkpoints(model, paths):
    """Sets `model`'s weights to the mean of the weights saved in `paths`.

    The paper evaluates its base models with the average of the last 5
    checkpoints (section 6.1). Each path is a `.keras` file of the same
    architecture; floating-point weights are averaged in float64 and cast
    back, any others (e.g. random seed states) are left as `model` has them.
    """
    paths = list(paths)
    set_mean_weights(model, [read_weights(path) for path in paths], paths)
