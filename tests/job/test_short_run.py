"""A `keras-tfm train --max-steps 20` smoke run of a config whose learning
rate cools down over its last 1,000 steps: the cooldown takes the whole
shortened run, and the models the run saves load in a fresh process after
nothing but `import keras, keras_tfm`."""

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from support.cli_runs import D_MODEL, WARMUP, tiny_config_text
from support.events import scalar_events
from support.processes import child_env
from support.schedules import cooled_down_lr, paper_lr

MAX_STEPS, STEPS_PER_EPOCH, COOLDOWN = 20, 8, 1000


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """`(run_dir, stdout)` of the tiny run with `cooldown_steps = 1000` and
    epochs of 8 steps, shortened by `--max-steps 20` (3 epochs: 8, 16 and 20
    steps), logging its step scalars at every step."""
    directory = tmp_path_factory.mktemp("short")
    config = directory / "short.toml"
    text = tiny_config_text(
        f"cooldown_steps = {COOLDOWN}\nsteps_per_epoch = {STEPS_PER_EPOCH}"
    )
    text = text.replace("log_every_steps = 3", "log_every_steps = 1")
    config.write_text(text)
    run_dir = directory / "run"
    command = [sys.executable, "-m", "keras_tfm.cli", "train", "--config", config]
    command += ["--run-dir", run_dir, "--max-steps", MAX_STEPS, "--no-export"]
    result = subprocess.run(
        list(map(str, command)),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir, result.stdout


def scheduled_lr(iterations, total_steps, cooldown_steps):
    """The tiny config's rate with the linear cooldown over the last
    `cooldown_steps` of `total_steps`."""
    return cooled_down_lr(iterations, D_MODEL, WARMUP, total_steps, cooldown_steps)


def test_max_steps_shorter_than_the_cooldown_cools_down_over_the_whole_run(
    short_run,
):
    run_dir, stdout = short_run
    line = (
        f"cooldown_steps ({COOLDOWN}) is more than the run's {MAX_STEPS} "
        f"optimizer steps: the learning rate cools down to zero over all {MAX_STEPS}"
    )
    assert stdout.count(line) == 1
    assert "cools down to zero over the last" not in stdout
    assert "did not finish" not in stdout
    # The rate each step leaves for the next, logged after every step.
    logged = scalar_events(run_dir / "logs" / "steps", "learning_rate")
    counters = np.arange(1, MAX_STEPS + 1)
    assert sorted(logged) == list(counters)
    expected = scheduled_lr(counters, MAX_STEPS, MAX_STEPS)
    got = np.array([logged[c] for c in counters])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)
    # The 20th step ran at 1/20 of the paper's rate; after it the rate is 0.
    last = paper_lr(MAX_STEPS - 1, D_MODEL, WARMUP) / MAX_STEPS
    assert got[-2] == pytest.approx(last, rel=1e-5)
    assert got[-1] == 0.0
    assert np.all(got[:-1] > 0)
    # fit's line for the last epoch reports the same 0.
    epoch_lines = [
        line for line in stdout.splitlines() if re.match(r"\d+/\d+ - ", line)
    ]
    assert len(epoch_lines) == 3
    logs = dict(re.findall(r" - (\w+): ([-+\w.]+)", epoch_lines[-1]))
    assert float(logs["learning_rate"]) == 0.0


LOAD_AND_PREDICT = textwrap.dedent(
    """
    import json
    import sys

    import numpy as np

    import keras, keras_tfm

    tensorflow_imported = "tensorflow" in sys.modules
    model = keras.models.load_model(sys.argv[1])
    inputs = dict(np.load(sys.argv[2]))
    np.save(sys.argv[3], keras.ops.convert_to_numpy(model(inputs, training=False)))
    optimizer = model.optimizer
    print(json.dumps({
        "backend": keras.backend.backend(),
        "tensorflow_imported_by_keras_tfm": tensorflow_imported,
        "optimizer": type(optimizer).__module__ + "." + type(optimizer).__name__,
        "schedule": optimizer._learning_rate.get_config(),
        "iterations": int(keras.ops.convert_to_numpy(optimizer.iterations)),
        "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
        "loss": type(model.loss).__name__,
        "label_smoothing": model.loss.label_smoothing,
    }))
    """
)


@pytest.mark.parametrize(
    "saved, iterations, backend",
    [
        ("model.keras", MAX_STEPS, "tensorflow"),
        ("checkpoints/epoch_001.keras", STEPS_PER_EPOCH, "tensorflow"),
        ("model.keras", MAX_STEPS, "jax"),
    ],
)
def test_saved_models_load_after_a_plain_import_keras_tfm(
    short_run, tmp_path, saved, iterations, backend
):
    """The run's compiled model (Adam on the Transformer schedule, the
    label-smoothed loss, the metrics) loads in a process that imported only
    keras and keras_tfm, predicts what the same file loaded here predicts,
    and keeps its optimizer's step count."""
    if backend == "jax":
        pytest.importorskip("jax")
    import keras

    import keras_tfm  # noqa: F401  (for the same load here)

    run_dir, _ = short_run
    path = run_dir / saved
    sizes = json.loads((run_dir / "transformer_config.json").read_text())
    rng = np.random.default_rng(0)
    inputs = {
        "source": rng.integers(4, sizes["src_vocab_size"], (3, 7)).astype("int32"),
        "target": rng.integers(4, sizes["tgt_vocab_size"], (3, 5)).astype("int32"),
    }
    inputs["source"][0, 5:] = 0  # some padding
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = tmp_path / "load.py"
    script.write_text(LOAD_AND_PREDICT)
    result = subprocess.run(
        [sys.executable, str(script), str(path), str(tmp_path / "inputs.npz")]
        + [str(tmp_path / "predictions.npy")],
        env=child_env(backend),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["backend"] == backend
    assert loaded["optimizer"] == "keras_tfm.training.optimizer.Adam"
    assert loaded["loss"] == "LabelSmoothedCrossEntropy"
    assert loaded["label_smoothing"] == pytest.approx(0.1)
    # The schedule as `keras-tfm train` made it: the cooldown takes the run.
    assert loaded["schedule"] == {
        "d_model": D_MODEL,
        "warmup_steps": WARMUP,
        "scale": 1.0,
        "total_steps": MAX_STEPS,
        "cooldown_steps": MAX_STEPS,
    }
    assert loaded["iterations"] == iterations
    assert loaded["learning_rate"] == pytest.approx(
        scheduled_lr(iterations, MAX_STEPS, MAX_STEPS), rel=1e-5, abs=0
    )
    if backend == "jax":
        assert loaded["tensorflow_imported_by_keras_tfm"] is False

    here = keras.models.load_model(path)
    assert int(keras.ops.convert_to_numpy(here.optimizer.iterations)) == iterations
    expected = keras.ops.convert_to_numpy(here(inputs, training=False))
    predictions = np.load(tmp_path / "predictions.npy")
    assert predictions.shape == expected.shape == (3, 5, sizes["tgt_vocab_size"])
    # The same numbers (another backend's kernels round a little differently).
    tolerance = 1e-6 if backend == "tensorflow" else 1e-4
    np.testing.assert_allclose(predictions, expected, rtol=tolerance, atol=tolerance)
