"""Screenshots of TensorBoard on a finished run, as a user sees it.

    python benchmarks/tensorboard_screenshots.py RUN_DIR \
        [--out-dir benchmarks/screenshots] [--chromium chromium]

Starts TensorBoard on `RUN_DIR/logs` (127.0.0.1, a free port), opens its Time
Series, Images and Scalars dashboards in headless Chromium (Debian's
`chromium` package) and saves `timeseries.png`, `images.png` and
`scalars.png` (filtered to loss, gradient norm and learning rate) in
`--out-dir`, then stops the server. Each screenshot is written under a
temporary name and renamed into place.
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

DASHBOARDS = {
    "timeseries": "timeseries",
    "images": "images",
    # The step-level curves of the run "steps", and the per-epoch ones.
    "scalars": "scalars&tagFilter=loss%7Cgradient_norm%7Clearning_rate",
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
    os.replace(temporary, path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out-dir", default="benchmarks/screenshots")
    parser.add_argument("--chromium", default="chromium")
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
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "tensorboard.main", "--logdir", str(logs),
            "--host", "127.0.0.1", "--port", str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/data/runs", server)
        for name, fragment in DASHBOARDS.items():
            path = screenshot(
                chromium,
                f"{base}/#{fragment}",
                out_dir / f"{name}.png",
                args.width,
                args.height,
                args.wait_ms,
            )
            print(path)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
