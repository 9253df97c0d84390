"""`keras-tfm train`: the printed config, the default config, the dtype
policy it leaves, runs counted in steps, the cooldown, a NaN loss."""

import json
import re
import tomllib
from importlib import resources

import numpy as np
import pytest
from support.cli_runs import (
    D_MODEL,
    EPOCHS,
    WARMUP,
    checkpoint_iterations,
    epoch_headers,
    parse_epochs,
    run_cli,
    split_lengths,
)
from support.events import scalar_events
from support.paths import ROOT, TINY
from support.schedules import paper_lr

from keras_tfm.job.run_config import load_run_config


def test_print_config_prints_the_resolved_config_and_trains_nothing(
    tmp_path, capsys, monkeypatch
):
    from keras_tfm.cli import main
    from keras_tfm.job.run_config import RunConfig, load_run_config

    monkeypatch.chdir(tmp_path)
    assert (
        main(["train", "--config", str(TINY), "--epochs", "2", "--print-config"]) == 0
    )
    printed = tomllib.loads(capsys.readouterr().out)
    expected = load_run_config(TINY, overrides={"training.epochs": ("--epochs", 2)})
    assert RunConfig.from_dict(printed) == expected
    assert printed["training"]["epochs"] == 2 and printed["model"]["pre_norm"] is False
    assert main(["train", "--print-config"]) == 0
    default = tomllib.loads(capsys.readouterr().out)
    assert default["name"] == "numbers" and default["training"]["jit_compile"] is True
    assert list(tmp_path.iterdir()) == []  # no run directory, no files


# ---------------------------------------------------------------- config
def test_keras_tfm_train_without_config_loads_the_packaged_numbers_toml(
    tmp_path, capsys, monkeypatch
):
    """The built-in default, package data and the only numbers.toml, is
    what `keras-tfm train` runs without --config: `--print-config` shows
    every value the file sets, and the sections' defaults for the rest."""
    from keras_tfm.cli import main
    from keras_tfm.job.run_config import RunConfig

    packaged = resources.files("keras_tfm").joinpath("configs", "numbers.toml")
    written = tomllib.loads(packaged.read_text(encoding="utf-8"))
    assert not (ROOT / "training" / "configs" / "numbers.toml").exists()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--print-config"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["name"] == written["name"] == "numbers"
    for section, values in written.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert printed[section][key] == value, (section, key)
    assert printed["data"]["task"] == "numbers" and printed["model"]["d_model"] == 128
    # Keys the file leaves out.
    assert printed["data"]["shuffle_buffer"] == 100_000
    assert printed["tokenizer"]["sampling_alpha"] == 0.0
    assert printed["training"]["accumulate_steps"] == 1
    loaded = load_run_config(None)
    assert loaded.source == "<built-in numbers.toml>"
    assert RunConfig.from_dict(printed) == loaded
    assert list(tmp_path.iterdir()) == []  # printed, nothing trained


@pytest.mark.slow
def test_train_restores_the_dtype_policy(tmp_path):
    """A Python caller's next model is float32 again after a bfloat16 run."""
    import keras

    from keras_tfm.job.run_config import load_run_config
    from keras_tfm.job.train import train

    config = load_run_config(TINY).updated(
        {"training.mixed_precision": True, "training.epochs": 1}
    )
    assert keras.config.dtype_policy().name == "float32"
    lines = []
    train(config, run_dir=tmp_path / "run", export=False, log=lines.append)
    assert keras.config.dtype_policy().name == "float32"
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    assert saved.get_layer("encoder").dtype_policy.name == "mixed_bfloat16"
    assert any(line.startswith("test (greedy): ") for line in lines)
    # On a CPU without bfloat16 matrix instructions (and no GPU) the log says
    # float32 may be faster; test_training checks the detection itself.
    from keras_tfm.training import bfloat16_is_emulated

    notes = [line for line in lines if line.startswith("note: mixed_precision")]
    assert len(notes) == int(bfloat16_is_emulated())


@pytest.mark.slow
def test_max_steps_and_fixed_epochs_of_steps(tmp_path):
    """`steps_per_epoch = 3` with `--max-steps 7`: epochs of 3 steps on the
    repeating stream, stopped after the 7th optimizer step, then evaluated
    and saved as usual."""
    config = tmp_path / "steps.toml"
    config.write_text(
        TINY.read_text().replace("epochs = 4", "epochs = 50\nsteps_per_epoch = 3")
    )
    run_dir = tmp_path / "run"
    result = run_cli(
        "--config", config, "--run-dir", run_dir, "--max-steps", 7, "--no-export"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "for 7 optimizer steps" in result.stdout
    assert epoch_headers(result.stdout) == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert [checkpoint_iterations(run_dir, n) for n in (1, 2, 3)] == [3, 6, 7]
    assert sorted(scalar_events(run_dir / "logs" / "validation", "epoch_loss")) == [
        0,
        1,
        2,
    ]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["sentences"] == 30


def test_cooldown_takes_the_learning_rate_to_zero_at_the_counted_last_step(tmp_path):
    """`cooldown_steps = 10` on the tiny run (4 epochs of batches of 32
    pairs): the run's length is counted before `fit`, and the rate each
    epoch ends with is the schedule's, cooled down linearly to 0."""
    config = tmp_path / "cooldown.toml"
    config.write_text(
        TINY.read_text().replace(
            "learning_rate_scale = 1.0",
            "learning_rate_scale = 1.0\ncooldown_steps = 10",
        )
    )
    run_dir = tmp_path / "run"
    result = run_cli("--config", config, "--run-dir", run_dir, "--no-export")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _, kept = split_lengths(run_dir, "train")
    batches = -(-int(kept.sum()) // 32)
    total = EPOCHS * batches
    assert (
        f"the learning rate cools down to zero over the last 10 of {total} "
        "optimizer steps" in result.stdout
    )
    epochs = parse_epochs(result.stdout)
    assert sorted(epochs) == [1, 2, 3, 4]
    for epoch in range(1, EPOCHS + 1):
        iterations = epoch * batches
        factor = np.clip((total - iterations) / 10, 0.0, 1.0)
        expected = float(paper_lr(iterations, D_MODEL, WARMUP)) * factor
        # fit prints 4 significant digits.
        assert epochs[epoch]["learning_rate"] == pytest.approx(expected, rel=2e-3)
    assert epochs[EPOCHS]["learning_rate"] == 0.0
    assert epochs[EPOCHS - 1]["learning_rate"] < 0.9 * float(
        paper_lr((EPOCHS - 1) * batches, D_MODEL, WARMUP)
    )
    assert checkpoint_iterations(run_dir, EPOCHS) == total
    assert "did not finish" not in result.stdout


@pytest.mark.slow
def test_nan_loss_exits_3_naming_step_and_epoch(tmp_path):
    config = tmp_path / "nan.toml"
    config.write_text(
        TINY.read_text().replace(
            "learning_rate_scale = 1.0", "learning_rate_scale = 1e30"
        )
    )
    run_dir = tmp_path / "run"
    result = run_cli(
        "--config", config, "--run-dir", run_dir, "--epochs", 2, "--no-export"
    )
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [
        line for line in result.stderr.splitlines() if line.startswith("keras-tfm")
    ]
    assert len(lines) == 1, result.stderr[-3000:]
    match = re.fullmatch(
        r"keras-tfm: error: training stopped: the loss became nan at step (\d+) of "
        r"epoch 1; lower the learning rate scale, raise warmup_steps, or train in "
        r"float32",
        lines[0],
    )
    assert match, lines[0]
    step = int(match.group(1))
    # Fit stopped right there: its progress line ends at that step.
    assert re.search(rf"^{step}/{step} - .* loss: nan", result.stdout, re.MULTILINE)
    assert epoch_headers(result.stdout) == ["Epoch 1/2"]
    assert not (run_dir / "metrics.json").exists()
    assert not (run_dir / "model.keras").exists()
