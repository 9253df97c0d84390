"""MirroredStrategy and MultiWorkerMirroredStrategy match one device, with
and without XLA, and the README's multi-worker recipe runs as written."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.adam import adam_initial, adam_steps, numpy_adam
from support.paths import DISTRIBUTED_WORKER, ROOT
from support.processes import child_env, free_ports
from support.schedules import paper_lr

WORKER = DISTRIBUTED_WORKER

pytestmark = pytest.mark.slow


def run_worker(mode, out_dir, variants, env_extra=None):
    """Starts one worker process that trains each variant in turn (see
    tests/support/scripts/distributed_worker.py) and saves `out_dir/VARIANT.npz`."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, str(out_dir), *variants],
        env=child_env(**(env_extra or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def cluster_configs(count=2):
    """TF_CONFIG values for `count` workers of one cluster on 127.0.0.1."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(count)]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        for i in range(count)
    ]


def compare(reference, other):
    assert int(other["replicas"]) == 2
    # The same starting point: each variant starts from the same weights.
    initial = [k for k in reference.files if k.startswith("initial:")]
    assert len(initial) > 20
    for name in initial:
        np.testing.assert_array_equal(other[name], reference[name], err_msg=name)
    np.testing.assert_allclose(other["loss"], reference["loss"], rtol=1e-5)
    np.testing.assert_allclose(other["accuracy"], reference["accuracy"], rtol=1e-6)
    names = [k for k in reference.files if k.startswith("weight:")]
    assert len(names) > 20
    compared = 0
    for name in names:
        # The key projection's bias shifts every score of a query equally, so
        # softmax makes its gradient exactly zero; rounding noise is all that
        # is left in it.
        if "/key/bias" in name:
            continue
        np.testing.assert_allclose(
            other[name], reference[name], atol=2e-4, err_msg=name
        )
        compared += 1
    assert compared >= len(names) - 6


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The reference: one device, no XLA."""
    out = tmp_path_factory.mktemp("one")
    finish(run_worker("one_device", out, ["graph"]))
    return np.load(out / "graph.npz")


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """One process over two logical CPUs: every mirrored variant."""
    out = tmp_path_factory.mktemp("mirrored")
    variants = ["graph", "xla", "graph-accumulate2", "xla-accumulate2", "adam"]
    finish(run_worker("mirrored", out, variants))
    return out


@pytest.fixture(scope="module")
def multi_worker(tmp_path_factory):
    """Two worker processes on 127.0.0.1, each training both variants."""
    out = tmp_path_factory.mktemp("multi_worker")
    processes = []
    for index, tf_config in enumerate(cluster_configs()):
        (out / str(index)).mkdir()
        processes.append(
            run_worker(
                "multi_worker", out / str(index), ["graph", "xla"],
                {"TF_CONFIG": tf_config},
            )
        )  # fmt: skip
    for process in processes:
        finish(process)
    return out


@pytest.mark.parametrize("variant", ["graph", "xla"])
def test_mirrored_two_logical_cpus_matches_one_device(one_device, mirrored, variant):
    result = np.load(mirrored / f"{variant}.npz")
    # XLA cannot compile the collectives: it compiles each replica's pass.
    assert str(result["xla"]) == ("replica" if variant == "xla" else "none")
    compare(one_device, result)


@pytest.mark.parametrize("variant", ["graph", "xla"])
def test_mirrored_accumulation_matches_one_device(one_device, mirrored, variant):
    """Two replicas, each running its half of every batch as two
    micro-batches of unequal tokens: the same SGD updates as one device
    running each whole batch at once."""
    result = np.load(mirrored / f"{variant}-accumulate2.npz")
    assert str(result["xla"]) == ("replica" if variant == "xla" else "none")
    compare(one_device, result)


def test_mirrored_adam_matches_numpy(mirrored):
    """keras_tfm's fused Adam under MirroredStrategy (two logical CPUs, each
    holding a different share of every gradient, embedding rows as
    IndexedSlices) makes the updates of float64 Adam on the summed gradient."""
    result = np.load(mirrored / "adam.npz")
    assert int(result["replicas"]) == 2
    initial, steps = adam_initial(), adam_steps()
    expected = numpy_adam(initial, steps, paper_lr(np.arange(len(steps)), 8, 3))
    for t in range(len(steps)):
        for name in initial:
            np.testing.assert_allclose(
                result[f"{name}:{t}"] - initial[name],
                expected[t][name] - initial[name],
                rtol=1e-5, atol=1e-7, err_msg=f"{name} after step {t + 1}",
            )  # fmt: skip


@pytest.mark.parametrize("variant", ["graph", "xla"])
def test_multi_worker_processes_match_each_other_and_one_device(
    one_device, multi_worker, variant
):
    first, second = (np.load(multi_worker / str(i) / f"{variant}.npz") for i in (0, 1))
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    assert str(first["xla"]) == ("replica" if variant == "xla" else "none")
    compare(one_device, first)


@pytest.mark.parametrize("files", [1, 4], ids=["by-pair", "by-file"])
def test_two_workers_read_every_pair_once(tmp_path, files):
    """Two worker processes on 127.0.0.1 stream their shares of the training
    text (one file: every other pair; four files: two whole files each)
    through the distributed dataset: no pair twice, none lost."""
    from keras_tfm.data.numbers_task import write_numbers_task
    from keras_tfm.data.text_files import read_parallel

    data_dir = write_numbers_task(
        tmp_path / "data", max_number=700, valid_size=50, test_size=50
    )
    sources, targets = read_parallel(data_dir, "train", "de", "en")
    if files > 1:
        for side, lines in (("de", sources), ("en", targets)):
            (data_dir / f"train.{side}").unlink()
            for shard in range(files):
                text = "\n".join(lines[shard::files]) + "\n"
                (data_dir / f"train.{shard}.{side}").write_text(text, "utf-8")
    processes = []
    for index, tf_config in enumerate(cluster_configs()):
        args = [sys.executable, str(WORKER), "shards", str(data_dir)]
        processes.append(
            subprocess.Popen(
                args + [str(tmp_path / f"worker{index}.npz")],
                env=child_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for process in processes:
        finish(process)
    read = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    assert [list(r["shard"]) for r in read] == [[2, 0], [2, 1]]
    rows = [list(r["rows"]) for r in read]
    assert len(set(sources)) == len(sources)
    assert all(abs(len(r) - len(sources) / 2) < len(sources) / 4 for r in rows)
    assert sorted(rows[0] + rows[1]) == sorted(sources)


def checkpoint_weights(path):
    import keras

    import keras_tfm.models.transformer  # noqa: F401  (registers the layers)

    return keras.saving.load_model(path, compile=False).get_weights()


def readme_multi_worker_recipe():
    """The README's two-worker commands, exactly as printed there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    recipe = [b for b in blocks if "--strategy multi_worker" in b]
    assert len(recipe) == 1, "the README should show one multi-worker recipe"
    return "\n".join(line.strip() for line in recipe[0].splitlines())


def test_readme_multi_worker_recipe_trains_the_default_task(tmp_path):
    """The default task (XLA on, as its config asks), two workers, 30 steps."""
    recipe = readme_multi_worker_recipe()
    ports = re.findall(r"127\.0\.0\.1:(\d+)", recipe)
    assert len(ports) == 2
    for old, new in zip(ports, free_ports(2)):
        recipe = recipe.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    # 30 optimizer steps instead of twelve epochs (the compile and the
    # all-reduce are the same); everything else as written.
    recipe = re.sub(r"(keras-tfm train [^&\n\\]*)", r"\1 --max-steps 30", recipe)
    assert recipe.count("--max-steps 30") == 2
    script = recipe + "\nfirst=$?\nwait $!\nsecond=$?\nexit $((first + second))\n"
    bin_dir = str(Path(sys.executable).parent)
    env = child_env(PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert output.count("on 2 replica(s) for 30 optimizer steps") == 2
    assert output.count("training ended after 30 optimizer steps") == 2
    assert output.count("XLA compiles each replica's forward and backward pass") == 2
    run_dir = tmp_path / "runs" / "mw"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["sentences"] == 500
    config = json.loads((run_dir / "config.json").read_text())
    assert config["training"]["jit_compile"] is True
    assert (tmp_path / "saved_models" / "numbers" / "1" / "saved_model.pb").is_file()
    # After the epoch both workers hold the same weights.
    chief = checkpoint_weights(run_dir / "checkpoints" / "epoch_001.keras")
    other = checkpoint_weights(
        run_dir / "workers" / "1" / "checkpoints" / "epoch_001.keras"
    )
    assert len(chief) == len(other) > 20
    for mine, theirs in zip(chief, other):
        np.testing.assert_array_equal(mine, theirs)


def test_mirrored_cli_trains_the_default_task_with_xla(tmp_path):
    """`keras-tfm train --strategy mirrored` over two logical CPUs, default
    config (XLA on), 30 optimizer steps."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(WORKER), "cli", "train", "--strategy", "mirrored",
         "--max-steps", "30", "--run-dir", str(run_dir), "--no-export"],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )  # fmt: skip
    output = finish(process, timeout=900)
    assert "on 2 replica(s) for 30 optimizer steps" in output
    assert "training ended after 30 optimizer steps" in output
    assert "XLA compiles each replica's forward and backward pass" in output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["sentences"] == 500
