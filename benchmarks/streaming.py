"""Memory and start-up time of `keras-tfm train` as the corpus grows.

    python benchmarks/streaming.py --data-dir ../shared/data/multi30k \
        [--pairs 500000 1500000 4500000] [--max-steps 20]

For each size, builds a corpus of that many pairs by repeating the Multi30k
training files (valid and test are linked as they are) under `--work-dir`,
then runs the job as a user does, `keras-tfm train --config
training/configs/multi30k_de_en.toml --data-dir CORPUS --max-steps N
--no-export`, in a fresh process, and reports:

* the time to check the files, to learn the tokenizers, and to the first
  training step, from the job's own log lines;
* the time at which the N-th step was done, and the whole job's wall time
  (which adds the test-set evaluation of the barely trained model);
* the process's peak resident memory (`ru_maxrss` of the child).

The corpora are large (4.5M pairs: about 580 MB) and are deleted afterwards
unless `--keep` is given.
"""

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "training" / "configs" / "multi30k_de_en.toml"


def build_corpus(source_dir, target_dir, pairs):
    """`target_dir/train.{de,en}` with `pairs` lines, repeating the source."""
    target_dir.mkdir(parents=True, exist_ok=True)
    for side in ("de", "en"):
        lines = (source_dir / f"train.{side}").read_bytes().splitlines(keepends=True)
        with open(target_dir / f"train.{side}", "wb") as out:
            whole, rest = divmod(pairs, len(lines))
            block = b"".join(lines)
            for _ in range(whole):
                out.write(block)
            out.writelines(lines[:rest])
    for split in ("valid", "test"):
        for side in ("de", "en"):
            link = target_dir / f"{split}.{side}"
            if not link.exists():
                link.symlink_to((source_dir / f"{split}.{side}").resolve())
    tok = target_dir / "tok"
    if (source_dir / "tok").exists() and not tok.exists():
        tok.symlink_to((source_dir / "tok").resolve())


def seconds_in(log, pattern):
    match = re.search(pattern, log)
    return float(match.group(1)) if match else None


def run_job(corpus, run_dir, max_steps):
    command = [
        sys.executable, "-m", "keras_tfm.cli", "train", "--config", str(CONFIG),
        "--data-dir", str(corpus), "--run-dir", str(run_dir),
        "--max-steps", str(max_steps), "--no-export",
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    # A fresh parent per job, so that its children's peak RSS is this job's.
    measure = (
        "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
        "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(code)"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", measure, *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wall = time.perf_counter() - started
    log = result.stdout
    if result.returncode != 0:
        raise SystemExit(f"the job failed ({result.returncode}):\n{log[-3000:]}")
    peak_kib = seconds_in(log, r"PEAK_KIB (\d+)")
    return {
        "check_s": seconds_in(log, r"file pair\(s\), checked in ([\d.]+) s"),
        "tokenizers_s": seconds_in(log, r"tokenizers ready in ([\d.]+) s"),
        "first_step_s": seconds_in(log, r"first training step done ([\d.]+) s"),
        "steps_done_s": seconds_in(log, r"optimizer steps, ([\d.]+) s after start"),
        "wall_s": wall,
        "peak_rss_gib": peak_kib / 2**20,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="the Multi30k folder")
    parser.add_argument(
        "--pairs", type=int, nargs="+", default=[500_000, 1_500_000, 4_500_000]
    )
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--work-dir", default="/tmp/keras_tfm_streaming")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    source = Path(args.data_dir).expanduser()
    work = Path(args.work_dir)
    print(
        f"{platform.machine()}, {os.cpu_count()} cpus; config {CONFIG.name}, "
        f"--max-steps {args.max_steps}"
    )
    print(
        "| pairs | check s | tokenizers s | first step s | "
        f"{args.max_steps} steps done s | job wall s | peak RSS GiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for pairs in args.pairs:
        corpus = work / f"corpus_{pairs}"
        build_corpus(source, corpus, pairs)
        result = run_job(corpus, work / f"run_{pairs}", args.max_steps)
        print(
            f"| {pairs:,} | {result['check_s']:.1f} | {result['tokenizers_s']:.1f} | "
            f"{result['first_step_s']:.1f} | {result['steps_done_s']:.1f} | "
            f"{result['wall_s']:.1f} | {result['peak_rss_gib']:.2f} |",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(corpus)
            shutil.rmtree(work / f"run_{pairs}", ignore_errors=True)


if __name__ == "__main__":
    main()
