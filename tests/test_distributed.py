"""MirroredStrategy and MultiWorkerMirroredStrategy match one device."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_worker(mode, out, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    env.pop("KERAS_BACKEND", None)
    return subprocess.Popen(
        [sys.executable, str(HERE / "distributed_worker.py"), mode, str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=240):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def compare(reference, other):
    assert int(other["replicas"]) == 2
    np.testing.assert_allclose(other["loss"], reference["loss"], rtol=1e-5)
    np.testing.assert_allclose(other["accuracy"], reference["accuracy"], rtol=1e-6)
    names = [k for k in reference.files if k.startswith("weight:")]
    assert len(names) > 20
    compared = 0
    for name in names:
        # The key projection's bias shifts every score of a query equally, so
        # softmax makes its gradient exactly zero; Adam (epsilon 1e-9) turns
        # the rounding noise left in it into full-size steps of either sign.
        if "/key/bias" in name:
            continue
        np.testing.assert_allclose(
            other[name], reference[name], atol=2e-4, err_msg=name
        )
        compared += 1
    assert compared >= len(names) - 6


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "one.npz"
    finish(run_worker("one_device", out))
    return np.load(out)


def test_mirrored_two_logical_cpus_matches_one_device(one_device, tmp_path):
    out = tmp_path / "mirrored.npz"
    finish(run_worker("mirrored", out))
    compare(one_device, np.load(out))


def test_multi_worker_processes_match_each_other_and_one_device(one_device, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        processes.append(
            run_worker(
                "multi_worker",
                tmp_path / f"worker{index}.npz",
                {"TF_CONFIG": json.dumps(tf_config)},
            )
        )
    for process in processes:
        finish(process)
    first, second = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    compare(one_device, first)
