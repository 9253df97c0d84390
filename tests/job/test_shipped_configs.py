"""The shipped Multi30k config, smoke-run as its README command prints it
with `--max-steps 20`: it trains, chooses what it averages by validation
BLEU, and evaluates. Slow (minutes); needs Multi30k beside the checkout."""

import json

import pytest
from support.cli_runs import run_cli
from support.events import scalar_events
from support.paths import MULTI30K, ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MULTI30K.is_dir(), reason="no Multi30k beside the checkout"),
]


def test_multi30k_config_runs_20_steps_and_chooses_its_average(tmp_path):
    config = ROOT / "training" / "configs" / "multi30k_de_en.toml"
    run_dir = tmp_path / "run"
    result = run_cli(
        "--config", config, "--data-dir", MULTI30K, "--max-steps", 20,
        "--run-dir", run_dir, "--no-export", timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "choosing the epochs averaged by validation BLEU:" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # 20 steps are one epoch: the only window is that epoch, whose score the
    # epoch's validation callback logged too.
    assert metrics["epochs"] == 1 and metrics["averaged_epochs"] == [1, 1]
    logged = scalar_events(run_dir / "logs" / "validation", "epoch_bleu")
    assert metrics["averaged_valid_bleu"] == pytest.approx(logged[0], abs=0.006)
    assert metrics["sentences"] == 1000
