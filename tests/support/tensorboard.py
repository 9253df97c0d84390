"""A TensorBoard server on a log folder, for the tests that read what it
serves."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from support.processes import child_env, free_port


@contextlib.contextmanager
def serve_tensorboard(logdir, ready_run):
    """`get(path, **params) -> JSON` of a TensorBoard serving `logdir`, once
    it lists `ready_run`'s `epoch_loss`."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path, **params):
        url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read().decode()[-2000:]
            try:
                tags = get("/data/plugin/scalars/tags")
                if "epoch_loss" in tags.get(ready_run, {}):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "TensorBoard did not come up"
            time.sleep(0.5)
        yield get
    finally:
        # Its own session: the server and the data server it started.
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        process.stdout.close()


def hparams_sessions(get):
    """`(experiment, session groups)` as the HParams dashboard asks for them
    (every hyperparameter and metric column, any status), from a server's
    `get`."""
    experiment = get("/data/plugin/hparams/experiment", request="{}")
    request = {
        "startIndex": 0,
        "sliceSize": 100,
        "allowedStatuses": [
            "STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING",
        ],
        "colParams": [{"hparam": h["name"]} for h in experiment["hparamInfos"]]
        + [{"metric": m["name"]} for m in experiment["metricInfos"]],
    }  # fmt: skip
    groups = get("/data/plugin/hparams/session_groups", request=json.dumps(request))
    return experiment, groups["sessionGroups"]
