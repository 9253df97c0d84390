"""Choosing which epochs' weights to average by validation BLEU."""

from keras_tfm.training.checkpoints import read_weights, set_mean_weights


def candidate_windows(last_epoch, most, best_epoch=None):
    """The runs of consecutive epochs worth averaging, as `(first, last)`.

    The last 1 to `most` epochs of the run, then, when the best epoch by
    validation BLEU is another one (early stopping ends a run `patience`
    epochs after it), the 1 to `most` epochs ending at the best one.
    Windows never reach before epoch 1.

    Args:
        last_epoch: the run's last epoch (counted from 1).
        most: the most epochs averaged (`[training] average_checkpoints`).
        best_epoch: the epoch with the best validation BLEU, or None.

    Example:
    >>> candidate_windows(10, 3, best_epoch=8)
    [(10, 10), (9, 10), (8, 10), (8, 8), (7, 8), (6, 8)]
    """
    ends = [last_epoch]
    if best_epoch not in (None, last_epoch):
        ends.append(best_epoch)
    return [
        (end - count + 1, end)
        for end in ends
        for count in range(1, most + 1)
        if end - count + 1 >= 1
    ]


def choose_average(model, checkpoints, windows, score, log=print):
    """Sets `model` to the window of epochs whose mean weights score best.

    Each window's checkpoints are averaged into `model` (each file read
    once) and `score()` is called; the highest score wins, and on a tie the
    window listed first (fewer epochs, the last ones before the best's).

    Args:
        model: the trained model, whose weights are replaced.
        checkpoints: `{epoch: path}` of the epochs' `.keras` files; windows
            with an epoch missing are skipped.
        windows: `(first, last)` epochs, as `candidate_windows` gives them.
        score: `() -> float`, the model's validation BLEU as it stands.
        log: where a line per window goes.

    Returns:
        `(chosen window, {window: score})`.
    """
    weights, scores = {}, {}
    for first, last in windows:
        epochs = range(first, last + 1)
        if not all(epoch in checkpoints for epoch in epochs):
            continue
        for epoch in epochs:
            if epoch not in weights:
                weights[epoch] = read_weights(checkpoints[epoch])
        set_mean_weights(model, [weights[e] for e in epochs], epochs)
        scores[first, last] = score()
        bleu = scores[first, last]
        log(f"  epochs {first} to {last} averaged: validation BLEU {bleu:.2f}")
    if not scores:
        raise ValueError("no window of epochs has all its checkpoints")
    chosen = max(scores, key=scores.get)
    set_mean_weights(model, [weights[e] for e in range(chosen[0], chosen[1] + 1)])
    return chosen, scores
