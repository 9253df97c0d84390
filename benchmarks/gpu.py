"""Training throughput on one GPU under JAX: keras_tfm against keras-hub.

The same comparison as `train_throughput.py` (same model builders, same
synthetic batches, `compile` + `fit`, plain sparse cross-entropy, Adam, no
shared or tied embeddings), run with `KERAS_BACKEND=jax`, `mixed_bfloat16`
and jit (JAX always compiles the train step). For a machine with JAX but no
TensorFlow: nothing here imports TensorFlow.

Settings, each in its own process, alternating over `--rounds`:
  keras_hub           keras-hub's TransformerEncoder/Decoder
  keras_tfm           keras_tfm, attention through keras.ops.dot_product_attention
                      (the default on JAX: XLA or cuDNN fused attention)
  keras_tfm_explicit  keras_tfm with the explicit einsum-softmax-einsum path

Reported per setting: median ms per step (each step synchronised on the
loss), tokens per second (source + target), peak GPU memory, model FLOPs
per step (matmul FLOPs, forward x 3) and their utilisation (MFU) against an
8192^3 bf16 matmul timed in the same run.

    KERAS_BACKEND=jax python benchmarks/gpu.py --configs base big
    KERAS_BACKEND=jax python benchmarks/gpu.py --configs tiny --steps 3  # CPU check

The device machine has no keras or keras-hub: `bash benchmarks/gpu_wheels.sh`
downloads them (and their missing dependencies) into `.whl/` for carrying;
there, with `.whl` carried:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site KERAS_BACKEND=jax PYTHONUNBUFFERED=1 \
        python3 benchmarks/gpu.py --configs base big --json $OUT/gpu.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# The sibling benchmark's builders, and keras_tfm from this checkout (the
# device machine has it only as the copied tree, not installed).
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import train_throughput  # noqa: E402
from train_throughput import build_keras_hub, build_keras_tfm, training_flops  # noqa: E402

CONFIGS = {
    # The paper's base and big sizes with a 32k vocabulary; base with the
    # larger batch of the published GPU figures.
    "base": {**train_throughput.CONFIGS["base"], "batch": 256, "length": 64},
    "big": train_throughput.CONFIGS["big"],
    # Seconds on a CPU: checks that the script runs end to end.
    "tiny": dict(
        d_model=64, num_heads=4, d_ff=128, layers=2, vocab=500, batch=8, length=16
    ),
}
SETTINGS = ["keras_hub", "keras_tfm", "keras_tfm_explicit"]


def worker(args):
    """Times one setting in this process; prints one JSON line."""
    import keras
    import numpy as np

    if keras.config.backend() != "jax":
        sys.exit("run with KERAS_BACKEND=jax")
    import jax

    c = CONFIGS[args.config]
    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    if args.setting == "keras_tfm_explicit":
        import functools

        import keras_tfm.layers.multi_head_attention as mha

        mha.scaled_dot_product_attention = functools.partial(
            mha.scaled_dot_product_attention, use_fused=False
        )
    build = build_keras_hub if args.setting == "keras_hub" else build_keras_tfm
    model = build(c)
    model.compile(
        keras.optimizers.Adam(1e-4),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    warmup = 5
    rows = c["batch"] * (warmup + args.steps)
    shape = (rows, c["length"])
    source = rng.integers(1, c["vocab"], shape).astype("int32")
    target = rng.integers(1, c["vocab"], shape).astype("int32")
    labels = rng.integers(1, c["vocab"], shape).astype("int32")
    stamps = []

    class Stamp(keras.callbacks.Callback):
        def on_train_batch_end(self, index, logs=None):
            float(logs["loss"])  # waits for the step to finish
            stamps.append(time.perf_counter())

    model.fit(
        {"source": source, "target": target},
        labels,
        batch_size=c["batch"],
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[Stamp()],
    )
    steps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :])]
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    print(
        json.dumps(
            {
                "steps": steps,
                "peak_memory_mb": stats.get("peak_bytes_in_use", 0) / 2**20,
                "parameters": model.count_params(),
                "device": str(device.device_kind),
            }
        )
    )


def matmul_tflops(size, repeats=20):
    """bf16 matmul throughput of this device (TFLOP/s), median of repeats."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(keys[0], (size, size), jnp.bfloat16)
    b = jax.random.normal(keys[1], (size, size), jnp.bfloat16)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e12


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS))
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=SETTINGS)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if os.environ.get("KERAS_BACKEND") != "jax":
        sys.exit("run with KERAS_BACKEND=jax")
    configs = args.configs or ["base", "big"]

    results = {}
    for config in configs:
        samples = {s: [] for s in args.settings}
        info = {}
        for round_index in range(args.rounds):
            order = args.settings if round_index % 2 == 0 else args.settings[::-1]
            for setting in order:
                command = [sys.executable, __file__, "--worker", "--config", config]
                command += ["--setting", setting, "--steps", str(args.steps)]
                out = subprocess.run(command, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"{config} {setting} failed:\n{out.stderr[-3000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                samples[setting] += result.pop("steps")
                info[setting] = result
                print(
                    f"{config} round {round_index + 1}: {setting}: "
                    f"{1000 * statistics.median(samples[setting]):.1f} ms/step",
                    file=sys.stderr,
                    flush=True,
                )
        results[config] = (samples, info)

    peak = matmul_tflops(args.matmul_size)
    import jax
    import keras

    device = jax.devices()[0].device_kind
    print(
        f"{device}; JAX {jax.__version__}, Keras {keras.__version__}; "
        f"bf16 {args.matmul_size}^3 matmul: {peak:.0f} TFLOP/s"
    )
    table = []
    for config, (samples, info) in results.items():
        c = CONFIGS[config]
        flops = training_flops(c)
        tokens = 2 * c["batch"] * c["length"]
        print(
            f"\nconfig {config}: {c}; {flops / 1e12:.2f} TFLOP per step; "
            + ", ".join(f"{s} {info[s]['parameters']:,} parameters" for s in info)
        )
        print("| setting | ms/step | tokens/s | peak GPU MB | TFLOP/s | MFU |")
        print("|---|---:|---:|---:|---:|---:|")
        for setting in args.settings:
            step = statistics.median(samples[setting])
            rate = flops / step / 1e12
            row = dict(
                config=config,
                setting=setting,
                ms_per_step=round(1000 * step, 2),
                tokens_per_second=round(tokens / step),
                peak_memory_mb=round(info[setting]["peak_memory_mb"]),
                tflops=round(rate, 1),
                mfu=round(rate / peak, 3),
            )
            table.append(row)
            print(
                f"| {setting} | {row['ms_per_step']} | {row['tokens_per_second']:,} | "
                f"{row['peak_memory_mb']:,} | {row['tflops']} | "
                f"{100 * row['mfu']:.1f}% |"
            )
        hub = [
            r for r in table if r["config"] == config and r["setting"] == "keras_hub"
        ]
        ours = [
            r for r in table if r["config"] == config and r["setting"] != "keras_hub"
        ]
        if hub and ours:
            best = max(ours, key=lambda r: r["tokens_per_second"])
            ratio = best["tokens_per_second"] / hub[0]["tokens_per_second"]
            print(f"best keras_tfm ({best['setting']}) / keras_hub: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"device": device, "matmul_tflops": peak, "rows": table},
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
