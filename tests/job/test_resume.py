"""A `keras-tfm train` run killed mid-epoch resumes from its backup."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest
from support.cli_runs import (
    D_MODEL,
    EPOCHS,
    WARMUP,
    checkpoint_iterations,
    cli,
    epoch_headers,
    parse_epochs,
    run_cli,
)
from support.events import scalar_events, scalar_events_file
from support.paths import TINY
from support.processes import child_env
from support.schedules import paper_lr


def wait_for_backup(path, process, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before its first backup"
        try:
            epoch = json.loads(path.read_text())["epoch"]
            if epoch >= 1:
                return epoch
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError("no backup after one epoch")


@pytest.mark.slow
def test_killed_run_resumes_from_the_backup(tmp_path):
    run_dir = tmp_path / "run"
    args = ("--config", TINY, "--run-dir", run_dir, "--no-export")
    metadata = run_dir / "backup" / "training_metadata.json"
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        cli(*args), env=child_env(), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_backup(metadata, first)
        # Killed during the next epoch: no clean shutdown of any kind.
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        log.close()
    assert first.returncode == -signal.SIGKILL
    finished = json.loads(metadata.read_text())["epoch"]
    assert 1 <= finished < EPOCHS
    assert not (run_dir / "metrics.json").exists()
    train_logs = run_dir / "logs" / "train"
    before = scalar_events(train_logs, "epoch_loss")
    assert sorted(before) == list(range(finished))
    old_files = set(train_logs.iterdir())

    second = run_cli(*args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    out = second.stdout
    assert (
        f"resuming from the backup in {run_dir / 'backup'} after epoch {finished}\n"
        in out
    )
    # Only the epochs that were left, numbered as in the first run.
    assert epoch_headers(out) == [
        f"Epoch {n}/{EPOCHS}" for n in range(finished + 1, EPOCHS + 1)
    ]
    new_files = set(train_logs.iterdir()) - old_files
    assert new_files
    resumed = {}
    for path in new_files:
        resumed.update(scalar_events_file(path, "epoch_loss"))
    assert sorted(resumed) == list(range(finished, EPOCHS))
    # The optimizer's step counter came back too: the schedule goes on from it.
    printed = parse_epochs(out)
    steps = printed[EPOCHS]["steps"]
    iterations = {
        n: checkpoint_iterations(run_dir, n) for n in range(finished, EPOCHS + 1)
    }
    for n in range(finished + 1, EPOCHS + 1):
        assert iterations[n] - iterations[n - 1] == steps
        np.testing.assert_allclose(
            printed[n]["learning_rate"],
            paper_lr(iterations[n], D_MODEL, WARMUP),
            atol=5.1e-5,
        )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == EPOCHS and metrics["sentences"] == 30
    assert not metadata.exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        f"epoch_{n:03d}.keras" for n in range(1, EPOCHS + 1)
    ]
