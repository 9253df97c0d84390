"""Whether bfloat16 or int8 weights could speed up a decoding step on this
CPU: TensorFlow's matrix products at the step's shapes, by dtype.

    python benchmarks/low_precision_matmul.py [--rows 256] [--repeats 200]

A decoding step is matrix products of `(rows, d_model)` activations with
the decoder's weights (batch 64 x beam 4 = 256 rows; 4 at batch 1). For
the Multi30k shape (d_model 256, d_ff 1024, 8,000 output pieces) the script
times, in one TensorFlow graph per case, with 2 threads:

* float32 `MatMul` (what the exported graph runs today);
* bfloat16 `MatMul` (the `dtype="bfloat16"` export);
* int8 x int8 -> int32 (`tf.linalg.matmul(..., output_type=tf.int32)`,
  TensorFlow's only int8 product in its core ops), weights quantized per
  column ahead, alone and with what an int8 step must add around it: the
  activations quantized per row (absolute maximum, scale, round, cast)
  and the result scaled back to float32.

Medians of `--repeats` calls, microseconds, and the ratio to float32. The
`lscpu` flags printed first say which instructions the kernels can use.
"""

import argparse
import os
import statistics
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (name, inner, outer): the step's products at the Multi30k shape.
PRODUCTS = [
    ("self-attention q/k/v", 256, 768),
    ("feed-forward inner", 256, 1024),
    ("feed-forward outer", 1024, 256),
    ("output projection", 256, 8000),
]
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16")


def quantize_rows(x):
    """int8 values and float32 scales `(rows, 1)`: symmetric, per row."""
    import tensorflow as tf

    scale = tf.reduce_max(tf.abs(x), axis=1, keepdims=True) / 127.0
    scale = tf.maximum(scale, 1e-12)
    return tf.cast(tf.round(x / scale), tf.int8), scale


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[256, 4])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.split()
    model = next(
        (line.split(":", 1)[1].strip() for line in
         subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
         if line.startswith("Model name")), "?"
    )  # fmt: skip
    print(f"CPU: {model}; flags: " + " ".join(f for f in FLAGS if f in flags))
    rng = np.random.default_rng(0)
    print("| rows | product | float32 us | bfloat16 | int8 product only | int8 step |")
    print("|---:|---|---:|---:|---:|---:|")
    for rows in args.rows:
        for name, inner, outer in PRODUCTS:
            cells = measure(rows, inner, outer, rng, args.repeats)
            base = cells[0]
            print(
                f"| {rows} | {name} ({inner} x {outer}) | {base:,.0f} | "
                + " | ".join(f"{c:,.0f} ({c / base:.2f}x)" for c in cells[1:])
                + " |"
            )


def timed(function, argument, repeats):
    """Median microseconds of `function(argument)`, after 10 warm calls."""
    for _ in range(10):
        function(argument)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - began)
    return 1e6 * statistics.median(times)


def measure(rows, inner, outer, rng, repeats):
    """Microseconds of a `(rows, inner) x (inner, outer)` product: float32,
    bfloat16, int8 alone, int8 with the activations quantized around it."""
    import numpy as np
    import tensorflow as tf

    x = tf.constant(rng.standard_normal((rows, inner)), tf.float32)
    w = (rng.standard_normal((inner, outer)) / np.sqrt(inner)).astype("float32")
    w_scale = np.abs(w).max(axis=0, keepdims=True) / 127.0
    w_int8 = tf.constant(np.round(w / w_scale).astype("int8"))
    w_scale = tf.constant(w_scale, tf.float32)
    w32, w16 = tf.constant(w), tf.constant(w, tf.bfloat16)

    def int8_product(values, scale):
        product = tf.linalg.matmul(values, w_int8, output_type=tf.int32)
        return tf.cast(product, tf.float32) * scale * w_scale

    # The int8 result agrees with float32 to int8 precision.
    exact = x.numpy() @ w
    approx = int8_product(*quantize_rows(x)).numpy()
    error = np.abs(approx - exact).max() / np.abs(exact).max()
    assert error < 0.05, error

    # A corner of the result is returned: the product itself is timed, not
    # a copy of it out of the graph.
    f32 = tf.function(lambda a: tf.matmul(a, w32)[:1, :1])
    b16 = tf.function(lambda a: tf.matmul(a, w16)[:1, :1])
    i8 = tf.function(
        lambda a: tf.linalg.matmul(a, w_int8, output_type=tf.int32)[:1, :1]
    )
    i8_step = tf.function(lambda a: int8_product(*quantize_rows(a))[:1, :1])
    return [
        timed(f32, x, repeats),
        timed(b16, tf.cast(x, tf.bfloat16), repeats),
        timed(i8, quantize_rows(x)[0], repeats),
        timed(i8_step, x, repeats),
    ]


if __name__ == "__main__":
    main()
