"""Training throughput of keras_tfm against an equal keras-hub model.

Both models get the same sizes, loss (plain sparse cross-entropy from
logits, as `compile` + `fit` users write it) and the same synthetic batches;
neither shares nor ties embeddings. Both train with Adam, each library's
own: `keras_tfm.training.Adam` (what `keras-tfm train` uses: Keras' Adam
with TensorFlow's fused update kernel) for keras_tfm, `keras.optimizers.Adam`
for keras-hub, which has no optimizer of its own. The library
`keras_tfm_keras_adam` is keras_tfm's model with `keras.optimizers.Adam`.
keras-hub's model is `TokenAndPositionEmbedding` + `TransformerEncoder` x N,
and `TokenAndPositionEmbedding` + `TransformerDecoder` x N, then a Dense
output.

Each (library, precision, XLA) setting runs in its own process (so peak
memory is that setting's alone), in alternating order over `--rounds`
rounds. A process builds its model, warms up, then times `--steps` training
steps inside one `fit` call; each step is synchronised by reading the loss
in a callback. Reported: median ms per step over all rounds, tokens per
second (source + target tokens), peak resident memory, model FLOPs per step
(matmul FLOPs of forward + backward: 3x the forward), and utilisation
against a 2048x2048 matmul of the same precision measured in this run.

    python benchmarks/train_throughput.py --config small [--rounds 3]
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "small": dict(
        d_model=256, num_heads=8, d_ff=1024, layers=3, vocab=8000, batch=64, length=32
    ),
    "base": dict(
        d_model=512, num_heads=8, d_ff=2048, layers=6, vocab=32000, batch=64, length=32
    ),
    "big": dict(
        d_model=1024,
        num_heads=16,
        d_ff=4096,
        layers=6,
        vocab=32000,
        batch=128,
        length=128,
    ),
}


def training_flops(c):
    """Matmul FLOPs of one training step (forward x 3)."""
    d, f, n, v = c["d_model"], c["d_ff"], c["layers"], c["vocab"]
    tokens = c["batch"] * c["length"]  # per side
    t = c["length"]
    projections = 4 * d * d + 2 * d * f  # per layer, per token
    attention = 2 * t * d  # QK^T and AV, per token per attention
    encoder = n * (projections + attention)
    decoder = n * (projections + 4 * d * d + 2 * attention)
    forward = 2 * tokens * (encoder + decoder + d * v)
    return 3 * forward


def build_keras_tfm(c):
    import keras_tfm

    config = keras_tfm.TransformerConfig(
        src_vocab_size=c["vocab"],
        tgt_vocab_size=c["vocab"],
        d_model=c["d_model"],
        num_heads=c["num_heads"],
        d_ff=c["d_ff"],
        num_encoder_layers=c["layers"],
        num_decoder_layers=c["layers"],
        dropout=0.1,
        max_length=c["length"],
    )
    return keras_tfm.build_transformer(config)


def build_keras_hub(c):
    import keras
    import keras_hub

    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    x = keras_hub.layers.TokenAndPositionEmbedding(
        c["vocab"], c["length"], c["d_model"], mask_zero=True
    )(source)
    for _ in range(c["layers"]):
        x = keras_hub.layers.TransformerEncoder(c["d_ff"], c["num_heads"], dropout=0.1)(
            x
        )
    y = keras_hub.layers.TokenAndPositionEmbedding(
        c["vocab"], c["length"], c["d_model"], mask_zero=True
    )(target)
    for _ in range(c["layers"]):
        y = keras_hub.layers.TransformerDecoder(c["d_ff"], c["num_heads"], dropout=0.1)(
            y, x
        )
    logits = keras.layers.Dense(c["vocab"], dtype="float32")(y)
    return keras.Model({"source": source, "target": target}, logits)


def synthetic_dataset(c):
    """One fixed batch of random ids (no padding), repeated."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shape = (c["batch"], c["length"])
    batch = (
        {
            "source": rng.integers(1, c["vocab"], shape).astype("int32"),
            "target": rng.integers(1, c["vocab"], shape).astype("int32"),
        },
        rng.integers(1, c["vocab"], shape).astype("int32"),
    )
    return tf.data.Dataset.from_tensors(batch).repeat()


def worker(args):
    """One setting in this process; prints a JSON line."""
    import keras

    c = CONFIGS[args.config]
    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(0)
    if args.library == "keras_hub":
        model, optimizer = build_keras_hub(c), keras.optimizers.Adam(1e-4)
    elif args.library == "keras_tfm_keras_adam":
        model, optimizer = build_keras_tfm(c), keras.optimizers.Adam(1e-4)
    else:
        from keras_tfm.training import Adam

        model, optimizer = build_keras_tfm(c), Adam(1e-4)
    model.compile(
        optimizer,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=args.xla,
    )
    dataset = synthetic_dataset(c)
    stamps = []

    class Stamp(keras.callbacks.Callback):
        def on_train_batch_end(self, index, logs=None):
            float(logs["loss"])  # waits for the step to finish
            stamps.append(time.perf_counter())

    warmup = 5
    model.fit(
        dataset,
        steps_per_epoch=warmup + args.steps,
        epochs=1,
        verbose=0,
        callbacks=[Stamp()],
    )
    steps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :])]
    print(
        json.dumps(
            {
                "steps": steps,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,
                "parameters": model.count_params(),
            }
        )
    )


def matmul_gflops(precision, size=2048, repeats=10):
    import tensorflow as tf

    dtype = tf.bfloat16 if "bfloat16" in precision else tf.float32
    a = tf.random.normal((size, size), dtype=tf.float32)
    a = tf.cast(a, dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    matmul = tf.function(
        lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32))
    )
    float(matmul(a, b))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        float(matmul(a, b))
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument(
        "--precisions", nargs="+", default=["float32", "mixed_bfloat16"]
    )
    parser.add_argument(
        "--xla",
        nargs="+",
        type=int,
        default=[0],
        help="1 = compile(jit_compile=True); 0 = TF graph",
    )
    parser.add_argument(
        "--libraries",
        nargs="+",
        choices=["keras_tfm", "keras_hub", "keras_tfm_keras_adam"],
        default=["keras_tfm", "keras_hub"],
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.xla = bool(args.xla[0])
        return worker(args)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    c = CONFIGS[args.config]
    settings = [
        (p, x, lib) for p in args.precisions for x in args.xla for lib in args.libraries
    ]
    samples = {s: [] for s in settings}
    memory, params = {}, {}
    for round_index in range(args.rounds):
        order = settings if round_index % 2 == 0 else settings[::-1]
        for precision, xla, library in order:
            command = [
                sys.executable,
                __file__,
                "--worker",
                "--config",
                args.config,
                "--library",
                library,
                "--precision",
                precision,
                "--xla",
                str(xla),
                "--steps",
                str(args.steps),
            ]
            out = subprocess.run(command, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"{library} {precision} failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            samples[(precision, xla, library)] += result["steps"]
            memory[(precision, xla, library)] = result["peak_rss_mb"]
            params[library] = result["parameters"]
            print(
                f"round {round_index + 1}: {library} {precision} xla={xla}: "
                f"{1000 * statistics.median(result['steps']):.0f} ms/step",
                file=sys.stderr,
                flush=True,
            )
    peaks = {p: matmul_gflops(p) for p in args.precisions}
    flops = training_flops(c)
    tokens = 2 * c["batch"] * c["length"]
    import keras
    import tensorflow as tf

    print(
        f"config {args.config}: {c}; parameters "
        + ", ".join(f"{k} {v:,}" for k, v in params.items())
    )
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
        f"{flops / 1e9:.1f} GFLOP per step; 2048^2 matmul: "
        + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peaks.items())
    )
    print(
        "| library | precision | XLA | ms/step | tokens/s | peak RSS MB | "
        "GFLOP/s | MFU |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for precision, xla, library in settings:
        step = statistics.median(samples[(precision, xla, library)])
        rate = flops / step / 1e9
        row = dict(
            library=library,
            precision=precision,
            xla=bool(xla),
            ms_per_step=round(1000 * step, 1),
            tokens_per_second=round(tokens / step),
            peak_rss_mb=round(memory[(precision, xla, library)]),
            gflops=round(rate, 1),
            mfu=round(rate / peaks[precision], 3),
        )
        rows.append(row)
        print(
            f"| {library} | {precision} | {'on' if xla else 'off'} | "
            f"{row['ms_per_step']} | {row['tokens_per_second']:,} | "
            f"{row['peak_rss_mb']} | {row['gflops']} | {100 * row['mfu']:.1f}% |"
        )
    best = {}
    for row in rows:
        lib = row["library"]
        best[lib] = max(best.get(lib, 0), row["tokens_per_second"])
    for lib in ("keras_tfm", "keras_tfm_keras_adam"):
        if lib in best and "keras_hub" in best:
            print(f"best {lib} / best keras_hub: {best[lib] / best['keras_hub']:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"config": args.config, "rows": rows, "peaks": peaks}, handle, indent=2
            )


if __name__ == "__main__":
    main()
