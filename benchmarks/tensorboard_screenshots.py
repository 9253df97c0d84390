"""Screenshots of TensorBoard on finished runs, as a user sees it.

    python benchmarks/tensorboard_screenshots.py RUN_DIR [--runs-dir RUNS]
        [--out-dir benchmarks/screenshots] [--chromium chromium]
        [--only NAME ...]

Starts TensorBoard on `RUN_DIR/logs` (127.0.0.1, a free port) and, with
`--runs-dir`, a second one on `RUNS` (every run, as `tensorboard --logdir
runs` shows them), opens each dashboard in headless Chromium (Debian's
`chromium` package) and saves NAME.png in `--out-dir`:

* `timeseries`, `images`: the Time Series and Images dashboards of RUN_DIR;
* `scalars`: its Scalars, filtered to loss, gradient norm and learning rate;
* `validation_bleu`: its Scalars, filtered to the validation scores;
* `projector`: the Projector on its embeddings;
* `profile`: the Profile dashboard on its `profile_steps` trace (needs
  `pip install ".[profile]"` in the Python that runs this script);
* `hparams`: the HParams table of every run under `--runs-dir`.

Then it stops the servers. Each screenshot is written under a temporary name
and renamed into place.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# name -> (URL fragment, the server: "run" on RUN_DIR/logs, "runs" on RUNS)
DASHBOARDS = {
    "timeseries": ("timeseries", "run"),
    "images": ("images", "run"),
    # The step-level curves of the run "steps", and the per-epoch ones.
    "scalars": ("scalars&tagFilter=loss%7Cgradient_norm%7Clearning_rate", "run"),
    "validation_bleu": ("scalars&tagFilter=bleu%7Cexact_match", "run"),
    "projector": ("projector", "run"),
    "profile": ("profile", "run"),
    "hparams": ("hparams", "runs"),
}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url, process, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"TensorBoard exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"TensorBoard did not answer at {url}")


def screenshot(chromium, url, path, width, height, wait_ms):
    path = Path(path)
    fd, temporary = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=".png", dir=path.parent
    )
    os.close(fd)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--hide-scrollbars", f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--virtual-time-budget={wait_ms}",
                f"--screenshot={temporary}", url,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=180,
        )  # fmt: skip
    if os.path.getsize(temporary) == 0:
        os.unlink(temporary)
        raise SystemExit(f"Chromium wrote no screenshot of {url}")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
    return path


def start_tensorboard(logdir):
    """`(process, base URL)` of a TensorBoard serving `logdir`, answering."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
            "--host", "127.0.0.1", "--port", str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(base + "/data/runs", server)
    return server, base


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--runs-dir", help="a folder of runs, for HParams")
    parser.add_argument("--out-dir", default="benchmarks/screenshots")
    parser.add_argument("--chromium", default="chromium")
    parser.add_argument("--only", nargs="+", choices=sorted(DASHBOARDS))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--wait-ms", type=int, default=20000)
    args = parser.parse_args()

    chromium = shutil.which(args.chromium)
    if chromium is None:
        raise SystemExit(
            f"{args.chromium} not found (Debian: apt-get install chromium)"
        )
    logs = Path(args.run_dir) / "logs"
    if not logs.is_dir():
        raise SystemExit(f"{logs}: no such folder (is RUN_DIR a finished run?)")
    wanted = args.only or [
        name for name, (_, server) in DASHBOARDS.items()
        if server == "run" or args.runs_dir
    ]  # fmt: skip
    if any(DASHBOARDS[name][1] == "runs" for name in wanted) and not args.runs_dir:
        raise SystemExit("hparams needs --runs-dir")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    servers = {}
    try:
        servers["run"] = start_tensorboard(logs)
        if args.runs_dir:
            servers["runs"] = start_tensorboard(args.runs_dir)
        for name in wanted:
            fragment, server = DASHBOARDS[name]
            path = screenshot(
                chromium,
                f"{servers[server][1]}/#{fragment}",
                out_dir / f"{name}.png",
                args.width,
                args.height,
                args.wait_ms,
            )
            print(path)
    finally:
        for process, _ in servers.values():
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
