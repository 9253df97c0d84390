"""Generation speed: cached vs uncached decoding, greedy and beam search.

Measures generated tokens per second at output lengths 16, 64 and 128, batch
1 and 32, greedy and beam 4, with and without the key/value cache, on the
default model size (`TransformerConfig` defaults: the paper's base, d_model
512, 8 heads, d_ff 2048, 6+6 layers; `--model numbers` for the small model
of the default `keras-tfm train` config), with random weights and the end
token suppressed so every sequence runs to the full length. Uncached runs
whose decoder work (sequences x length^2) exceeds `--uncached-limit` are
skipped: they take minutes per call on a CPU. Each setting
is called the way the README shows, `keras_tfm.generate(model, ids, ...)`
(which compiles itself with XLA on TensorFlow and keeps the compiled
function; `--api make_generate_fn` for the explicit wrapper), is warmed up
once, then timed `--repeats` times; the table reports medians and the
cached/uncached ratio, with alternating order so that machine noise hits
both sides alike. `--model multi30k` is the size of
`training/configs/multi30k_de_en.toml` (d_model 256, 4 heads, d_ff 1024,
3+3 layers).

    python benchmarks/generation.py [--lengths 16 64 128] [--repeats 5]
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_tfm  # noqa: E402
from keras_tfm.decoding.generation import make_generate_fn  # noqa: E402
from keras_tfm.job.run_config import load_run_config  # noqa: E402

START_ID, END_ID = 2, 3


def default_model(name, vocab_size, max_length):
    if name == "numbers":
        config = load_run_config(None).updated({"model.max_length": max_length})
        model_cfg = config.model.transformer_config(vocab_size, vocab_size)
    elif name == "multi30k":
        model_cfg = keras_tfm.TransformerConfig(
            src_vocab_size=vocab_size,
            tgt_vocab_size=vocab_size,
            d_model=256,
            num_heads=4,
            d_ff=1024,
            num_encoder_layers=3,
            num_decoder_layers=3,
            max_length=max_length,
        )
    else:
        model_cfg = keras_tfm.TransformerConfig(
            src_vocab_size=vocab_size,
            tgt_vocab_size=vocab_size,
            max_length=max_length,
        )
    keras.utils.set_random_seed(0)
    model = keras_tfm.build_transformer(model_cfg)
    # Never end early: every timed sequence has exactly the requested length.
    output = model.output_logits
    bias = keras.ops.convert_to_numpy(output.bias).copy()
    bias[END_ID] = -1e9
    output.bias.assign(bias)
    return model, model_cfg


def time_call(fn, source, repeats):
    keras.ops.convert_to_numpy(fn(source)[0])  # compile + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(fn(source)[0])
        times.append(time.perf_counter() - start)
    return times


def _rate(value):
    return "skipped" if value != value else f"{value:,.0f}"


def _ratio(cached, uncached):
    return "—" if uncached != uncached else f"{cached / uncached:.2f}x"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--methods", nargs="+", default=["greedy", "beam"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--source-length", type=int, default=16)
    parser.add_argument(
        "--model", choices=["base", "multi30k", "numbers"], default="base"
    )
    parser.add_argument(
        "--api", choices=["generate", "make_generate_fn"], default="generate"
    )
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--uncached-limit", type=float, default=2e5)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    model, cfg = default_model(args.model, args.vocab_size, max(args.lengths) + 1)
    rng = np.random.default_rng(0)
    rows = []
    print(
        f"model: d_model={cfg.d_model} heads={cfg.num_heads} d_ff={cfg.d_ff} "
        f"layers={cfg.num_encoder_layers}+{cfg.num_decoder_layers} "
        f"vocab={args.vocab_size}, source length {args.source_length}; "
        f"through {args.api}; "
        f"keras {keras.__version__} ({keras.config.backend()}), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus"
    )
    header = (
        "| method | batch | out len | cached tok/s | uncached tok/s | speed-up |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    print(header)
    for method in args.methods:
        for batch in args.batches:
            source = rng.integers(4, args.vocab_size, (batch, args.source_length))
            source = source.astype("int32")
            for length in args.lengths:
                sequences = batch * (4 if method == "beam" else 1)
                variants = [True]
                if sequences * length**2 <= args.uncached_limit:
                    variants.append(False)
                make = make_generate_fn
                if args.api == "generate":

                    def make(model, **options):
                        return lambda ids: keras_tfm.generate(model, ids, **options)

                fns = {
                    cached: make(
                        model,
                        max_length=length,
                        start_id=START_ID,
                        end_id=END_ID,
                        method=method,
                        beam_size=4,
                        use_cache=cached,
                    )
                    for cached in variants
                }
                samples = {cached: [] for cached in variants}
                for round_index in range(2):
                    order = variants if round_index == 0 else variants[::-1]
                    for cached in order:
                        samples[cached] += time_call(
                            fns[cached], source, max(1, args.repeats // 2 + 1)
                        )
                tokens = batch * length
                cached_rate = tokens / statistics.median(samples[True])
                uncached_rate = float("nan")
                if False in samples:
                    uncached_rate = tokens / statistics.median(samples[False])
                row = dict(
                    method=method,
                    batch=batch,
                    length=length,
                    cached_tokens_per_second=round(cached_rate, 1),
                    uncached_tokens_per_second=None
                    if uncached_rate != uncached_rate
                    else round(uncached_rate, 1),
                    speedup=round(cached_rate / uncached_rate, 2)
                    if uncached_rate == uncached_rate
                    else None,
                )
                rows.append(row)
                print(
                    f"| {method} | {batch} | {length} | {cached_rate:,.0f} | "
                    f"{_rate(uncached_rate)} | {_ratio(cached_rate, uncached_rate)} |",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
