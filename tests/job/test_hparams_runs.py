"""Runs compared in TensorBoard's HParams dashboard, as the Multi30k recipe
was tuned (dropout, a cooldown, checkpoint averaging, beam length penalty),
re-created with three tiny runs: `tensorboard --logdir RUNS` lists each as a
session with its own settings and scores."""

import json

import pytest
from support.cli_runs import run_cli
from support.paths import TINY
from support.tensorboard import hparams_sessions, serve_tensorboard

VARIANTS = {
    "plain": "",
    "dropout": "[model]\ndropout = 0.2\n",
    "recipe": (
        "[training]\ncooldown_steps = 20\naverage_checkpoints = 2\n"
        '[evaluation]\nmethod = "beam"\nlength_penalty = 1.0\n'
    ),
}


def _config(text, extra):
    """The tiny config with `extra`'s keys put into their sections."""
    for block in extra.split("["):
        if not block:
            continue
        section, keys = block.split("]\n", 1)
        text = text.replace(f"[{section}]\n", f"[{section}]\n{keys}", 1)
    for key in ("dropout", "method"):  # replaced, not repeated
        first = text.find(f"\n{key} = ")
        second = text.find(f"\n{key} = ", first + 1)
        if second > 0:
            end = text.index("\n", second + 1)
            text = text[:second] + text[end:]
    return text.replace("samples = 2", "samples = 0\nattention_images = 0")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, extra in VARIANTS.items():
        config = root.parent / f"{root.name}_{name}.toml"
        config.write_text(_config(TINY.read_text(), extra))
        result = run_cli(
            "--config", config, "--run-dir", root / name, "--epochs", 2, "--no-export"
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def test_each_run_is_a_session_with_its_settings_and_scores(runs):
    with serve_tensorboard(runs, ready_run="recipe/logs/train") as get:
        _, groups = hparams_sessions(get)
    by_run = {g["sessions"][0]["name"].split("/")[0]: g for g in groups}
    assert sorted(by_run) == sorted(VARIANTS)
    assert all(len(g["sessions"]) == 1 for g in groups)
    for name, group in by_run.items():
        config = json.loads((runs / name / "config.json").read_text())
        metrics = json.loads((runs / name / "metrics.json").read_text())
        hparams = group["hparams"]
        for section, key in [
            ("model", "dropout"),
            ("training", "cooldown_steps"),
            ("training", "average_checkpoints"),
            ("evaluation", "method"),
            ("evaluation", "length_penalty"),
        ]:
            assert hparams[f"{section}.{key}"] == pytest.approx(config[section][key]), (
                name,
                key,
            )
        values = {
            (m["name"]["group"], m["name"]["tag"]): m["value"]
            for m in group["metricValues"]
        }
        assert values[("", "test/sacrebleu")] == pytest.approx(metrics["sacrebleu"])
        assert values[("validation", "epoch_bleu")] == pytest.approx(
            metrics["valid_bleu"], abs=1e-4
        )
    assert by_run["dropout"]["hparams"]["model.dropout"] == pytest.approx(0.2)
    assert by_run["recipe"]["hparams"]["evaluation.method"] == "beam"
    assert by_run["plain"]["hparams"]["training.average_checkpoints"] == 1
