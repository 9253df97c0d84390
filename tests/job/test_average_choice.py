"""`choose_average = true`: the epochs averaged, chosen by validation BLEU.

The windows tried are listed by hand; the chosen weights are checked
against NumPy means of the checkpoints, and the chosen window's score
against `evaluate_run` of the saved model (another code path)."""

import json
import re

import numpy as np
import pytest
from support.cli_runs import run_cli, tiny_config_text
from support.events import scalar_events
from support.fitting import small_model

from keras_tfm.job.average_choice import candidate_windows, choose_average


@pytest.mark.parametrize(
    "last, most, best, expected",
    [
        (5, 3, None, [(5, 5), (4, 5), (3, 5)]),
        (5, 3, 5, [(5, 5), (4, 5), (3, 5)]),
        (2, 5, None, [(2, 2), (1, 2)]),
        (9, 2, 5, [(9, 9), (8, 9), (5, 5), (4, 5)]),
        (9, 3, 2, [(9, 9), (8, 9), (7, 9), (2, 2), (1, 2)]),
    ],
)
def test_candidate_windows_end_at_the_last_and_at_the_best_epoch(
    last, most, best, expected
):
    assert candidate_windows(last, most, best) == expected


def _saved_epochs(tmp_path, count):
    """A small model saved after each of `count` "epochs": epoch e's
    weights are e plus noise, so a window's mean kernel is about its mean
    epoch."""
    model = small_model()
    model.build((None, None))
    rng = np.random.default_rng(0)
    saved, paths = {}, {}
    for epoch in range(1, count + 1):
        weights = [
            (epoch + 0.01 * rng.normal(size=w.shape)).astype(w.dtype)
            for w in model.get_weights()
        ]
        model.set_weights(weights)
        paths[epoch] = tmp_path / f"epoch_{epoch:03d}.keras"
        model.save(paths[epoch])
        saved[epoch] = weights
    return model, saved, paths


def test_choose_average_keeps_the_best_scoring_mean_and_the_first_of_a_tie(tmp_path):
    model, saved, paths = _saved_epochs(tmp_path, 4)

    def closeness_to(target):
        # The score: how near the mean of all weights is to `target`, to a
        # tenth (BLEU is printed to hundredths: ties happen).
        def score():
            values = np.concatenate([w.ravel() for w in model.get_weights()])
            return round(-abs(values.mean() - target), 1)

        return score

    lines = []
    windows = [(4, 4), (3, 4), (2, 4), (2, 2), (1, 2)]
    chosen, scores = choose_average(
        model, paths, windows, closeness_to(3.1), log=lines.append
    )
    assert chosen == (2, 4) and list(scores) == windows and len(lines) == 5
    # Means of epochs 4, 3.5, 3, 2 and 1.5: 3 is nearest to 3.1.
    assert scores[2, 4] == pytest.approx(-0.1, abs=0.01)
    for got, *epochs in zip(model.get_weights(), saved[2], saved[3], saved[4]):
        np.testing.assert_allclose(got, np.mean(epochs, axis=0), rtol=1e-6)

    # 2.5 is as near to epoch 2's weights as to epoch 3's: equal scores
    # keep the window listed first.
    chosen, _ = choose_average(
        model, paths, [(2, 2), (3, 3)], closeness_to(2.5), log=lines.append
    )
    assert chosen == (2, 2)
    for got, epoch_2 in zip(model.get_weights(), saved[2]):
        np.testing.assert_allclose(got, epoch_2, rtol=1e-6)

    # Windows that need a missing checkpoint are not tried.
    del paths[1]
    chosen, scores = choose_average(
        model, paths, [(1, 2), (3, 4)], closeness_to(0.0), log=lines.append
    )
    assert chosen == (3, 4) and list(scores) == [(3, 4)]
    with pytest.raises(ValueError, match="no window"):
        choose_average(model, paths, [(1, 1)], closeness_to(0.0), log=lines.append)


WINDOW_LINE = re.compile(r"epochs (\d+) to (\d+) averaged: validation BLEU ([\d.]+)")


def test_the_run_averages_the_epochs_that_score_best_on_valid(tmp_path):
    import keras

    from keras_tfm.job.finished_run import evaluate_run

    config = tmp_path / "choose.toml"
    training = "average_checkpoints = 2\nchoose_average = true"
    config.write_text(tiny_config_text(training))
    run_dir = tmp_path / "run"
    result = run_cli(
        "--config", config, "--run-dir", run_dir, "--epochs", 3, "--no-export"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Each epoch's validation BLEU, as TensorBoard has it.
    by_epoch = scalar_events(run_dir / "logs" / "validation", "epoch_bleu")
    by_epoch = {step + 1: value for step, value in by_epoch.items()}
    best = max(by_epoch, key=lambda epoch: (by_epoch[epoch], -epoch))
    expected = [(3, 3), (2, 3)]
    if best != 3:
        expected += [(best, best)] + ([(best - 1, best)] if best > 1 else [])
    tried = {
        (int(a), int(b)): float(bleu)
        for a, b, bleu in WINDOW_LINE.findall(result.stdout)
    }
    assert list(tried) == expected
    for (first, last), bleu in tried.items():
        if first == last:  # one epoch's weights: the score fit logged for it
            assert bleu == pytest.approx(by_epoch[last], abs=0.006)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    chosen = max(tried, key=tried.get)
    assert tuple(metrics["averaged_epochs"]) == chosen
    assert metrics["averaged_valid_bleu"] == pytest.approx(tried[chosen], abs=0.006)
    assert f"averaged the weights of epochs {chosen[0]} to {chosen[1]}\n" in (
        result.stdout
    )

    def weights(path):
        return keras.saving.load_model(path, compile=False).get_weights()

    final = weights(run_dir / "model.keras")
    averaged = [
        weights(run_dir / "checkpoints" / f"epoch_{e:03d}.keras")
        for e in range(chosen[0], chosen[1] + 1)
    ]
    for got, *epochs in zip(final, *averaged):
        np.testing.assert_allclose(got, np.mean(epochs, axis=0), rtol=1e-5, atol=1e-7)

    # The saved model scored again on the valid split (all 30 pairs: fewer
    # than valid_sentences), greedy.
    again = evaluate_run(run_dir, split="valid", overrides={"method": "greedy"})
    assert again["sentences"] == 30
    assert again["sacrebleu"] == pytest.approx(
        metrics["averaged_valid_bleu"], abs=0.006
    )
