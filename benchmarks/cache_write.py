"""XLA decoding speed with the portable cache write against `slice_update`.

`MultiHeadAttention` writes each step's keys and values into the
self-attention cache with `write_cache` (a scatter, a TensorFlow core op that
a stock TF Serving graph can run). Keras' own `ops.slice_update` is written
as the XLA op `XlaDynamicUpdateSlice` on TensorFlow, which only runs under
XLA. This script decodes the same inputs with both writes, compiled with XLA
through `make_generate_fn`, alternating between them round by round, and
reports the median tokens per second of each and their ratio (tokens are
checked equal).

    python benchmarks/cache_write.py [--rounds 5]
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_tfm  # noqa: E402
from keras_tfm.decoding.generation import make_generate_fn  # noqa: E402
from keras_tfm.layers import multi_head_attention  # noqa: E402

START_ID, END_ID = 2, 3


def slice_update_write(cache, start, keys, values):
    """The anchor: Keras' `slice_update` (XlaDynamicUpdateSlice on TF)."""
    entries = ops.cast(ops.stack([keys, values], axis=1), cache.dtype)
    return ops.slice_update(cache, [0, 0, start, 0, 0], entries)


WRITES = {
    "scatter": multi_head_attention.write_cache,
    "slice_update": slice_update_write,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--length", type=int, default=64)
    args = parser.parse_args()
    config = keras_tfm.TransformerConfig(
        src_vocab_size=8000, tgt_vocab_size=8000, d_model=256, num_heads=4,
        d_ff=1024, num_encoder_layers=3, num_decoder_layers=3,
        max_length=args.length + 1,
    )  # fmt: skip
    keras.utils.set_random_seed(0)
    model = keras_tfm.build_transformer(config)
    bias = model.output_logits.bias
    values = keras.ops.convert_to_numpy(bias).copy()
    values[END_ID] = -1e9  # never end early: every row runs the full length
    bias.assign(values)
    rng = np.random.default_rng(0)
    print(
        f"d_model 256, 3+3 layers, vocab 8000, {args.length} tokens, XLA; "
        f"keras {keras.__version__} ({keras.config.backend()}), "
        f"{platform.machine()}, {os.cpu_count()} cpus"
    )
    print("| method | batch | scatter tok/s | slice_update tok/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for method, batch in (("greedy", 1), ("greedy", 32), ("beam", 8)):
        source = rng.integers(4, 8000, (batch, 16)).astype("int32")
        fns, outputs = {}, {}
        for name, write in WRITES.items():
            multi_head_attention.write_cache = write
            fns[name] = make_generate_fn(
                model, max_length=args.length, start_id=START_ID, end_id=END_ID,
                method=method, beam_size=4,
            )  # fmt: skip
            outputs[name] = keras.ops.convert_to_numpy(fns[name](source)[0])
        multi_head_attention.write_cache = WRITES["scatter"]
        np.testing.assert_array_equal(outputs["scatter"], outputs["slice_update"])
        times = {name: [] for name in WRITES}
        for round_index in range(args.rounds):
            order = list(WRITES) if round_index % 2 == 0 else list(WRITES)[::-1]
            for name in order:
                start = time.perf_counter()
                keras.ops.convert_to_numpy(fns[name](source)[0])
                times[name].append(time.perf_counter() - start)
        rate = {n: batch * args.length / statistics.median(t) for n, t in times.items()}
        print(
            f"| {method} | {batch} | {rate['scatter']:,.0f} | "
            f"{rate['slice_update']:,.0f} | "
            f"{rate['scatter'] / rate['slice_update']:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
