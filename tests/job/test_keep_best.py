"""`keep_best_checkpoint = true` with `early_stopping_metric = "bleu"`: a
tiny run of 3 epochs whose final model is its best epoch by validation
BLEU, as TensorBoard recorded the scores."""

import json

import numpy as np
from support.cli_runs import run_cli, tiny_config_text
from support.events import scalar_events


def test_the_run_keeps_and_returns_its_best_epoch_by_validation_bleu(tmp_path):
    import keras

    import keras_tfm  # noqa: F401  (registers the layers)

    config = tmp_path / "best.toml"
    config.write_text(
        tiny_config_text('keep_best_checkpoint = true\nearly_stopping_metric = "bleu"')
    )
    run_dir = tmp_path / "run"
    result = run_cli(
        "--config", config, "--run-dir", run_dir, "--epochs", 3, "--no-export"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    bleu = scalar_events(run_dir / "logs" / "validation", "epoch_bleu")
    assert sorted(bleu) == [0, 1, 2]
    # The first epoch with the highest score (a tie is no improvement).
    best = max(bleu, key=lambda step: (bleu[step], -step)) + 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_epoch"] == best
    assert abs(metrics["best_val_bleu"] - bleu[best - 1]) < 1e-4
    record = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert record["epoch"] == best and record["monitor"] == "val_bleu"
    assert f"the run's model is epoch {best}'s, the best by val_bleu" in result.stdout

    def weights(name):
        path = run_dir / name
        return keras.saving.load_model(path, compile=False).get_weights()

    final = weights("model.keras")
    for got, kept, epoch in zip(
        final,
        weights("checkpoints/best.keras"),
        weights(f"checkpoints/epoch_{best:03d}.keras"),
    ):
        np.testing.assert_array_equal(got, kept)
        np.testing.assert_array_equal(got, epoch)
    if best != 3:
        last = weights("checkpoints/epoch_003.keras")
        assert not all(np.array_equal(a, b) for a, b in zip(final, last))
