"""XLA for the decoder step only, inside a plain TensorFlow loop, against
today's two exports: the plain graph and the search compiled whole.

    python benchmarks/xla_step.py RUN_DIR [--data-dir DIR] [--sentences 500]
        [--rounds 3] [--latency-sentences 30] [--early-stopping]

RUN_DIR is a finished `keras-tfm train` run; its model translates the test
split three ways, each a `tf.function` over `(batch, length)` source ids as
the SavedModel's `translate_ids` traces it, with the step's weights saved
as variables as an export does:

* `graph`: the plain export. Caches grow step by step and finished
  sentences leave the batch (shapes change every step).
* `xla_search`: the `--jit-compile` export. The whole search under XLA, on
  sources padded to a power-of-two batch and a multiple of 16 tokens; no
  sentence leaves the batch.
* `xla_step`: the loop and the beam bookkeeping in the plain graph, the
  decoder step (every layer and the output projection) compiled by XLA.
  Finished sentences still leave the batch; to bound the compilations, the
  step runs on caches of `max_length` positions (written in place) and on
  a batch padded to the next power of two of the sentences left (padding
  rows go in before the compiled call and come out after it). XLA compiles
  once per (sentences, source length) bucket.

All three run once over every batch before timing, so no compilation is
timed. Reported: sentences/s at batch 64 (medians of rounds, variants
alternating), batch-1 p50/p95 latency, and whether each variant's tokens
equal the plain graph's.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

THREADS = 2


def bucketed_xla_step(step, repeat):
    """`step` compiled by XLA, called on a batch padded to a power of two
    of sentences: `(rows, ...)` state in, the same rows out."""
    import tensorflow as tf

    from keras_tfm.decoding.compile_shapes import next_power_of_two

    compiled = tf.function(step, jit_compile=True, autograph=False)

    def pad(x, amount):
        return tf.pad(x, [[0, amount]] + [[0, 0]] * (len(x.shape) - 1))

    def call(sequences, t, state):
        self_caches, cross_caches, bias = state
        sentences = tf.shape(bias)[0]
        extra = next_power_of_two(sentences) - sentences
        rows = tf.shape(sequences)[0]
        padded_state = (
            tf.nest.map_structure(lambda x: pad(x, extra * repeat), self_caches),
            tf.nest.map_structure(lambda x: pad(x, extra), cross_caches),
            pad(bias, extra),
        )
        logits, (new_caches, _, _) = compiled(
            pad(sequences, extra * repeat), t, padded_state
        )
        new_caches = tf.nest.map_structure(lambda x: x[:rows], new_caches)
        return logits[:rows], (new_caches, cross_caches, bias)

    return call


def build_variants(model, options, start_id, end_id, source_limit):
    import tensorflow as tf

    from keras_tfm.constants import PADDING_ID
    from keras_tfm.decoding.compile_shapes import pad_to_compile_shape
    from keras_tfm.decoding.decode import make_search
    from keras_tfm.decoding.fused_step import DecoderStepWeights, fused_decoder_step
    from keras_tfm.decoding.generation import generate
    from keras_tfm.decoding.search import SearchInputs

    weights = DecoderStepWeights(model, options.max_length).map(
        lambda x: x if isinstance(x, tf.Variable) else tf.Variable(x, trainable=False)
    )
    ids_kwargs = dict(start_id=start_id, end_id=end_id, step_weights=weights)
    spec = [tf.TensorSpec([None, None], tf.int32)]

    @tf.function(input_signature=spec, autograph=False)
    def graph(ids):
        return generate(
            model, ids, options, jit_compile=False, dynamic_shapes=True, **ids_kwargs
        )

    whole = tf.function(
        lambda ids: generate(
            model, ids, options, jit_compile=False, dynamic_shapes=False, **ids_kwargs
        ),
        jit_compile=True,
        autograph=False,
    )

    @tf.function(input_signature=spec, autograph=False)
    def xla_search(ids):
        rows = tf.shape(ids)[0]
        tokens, scores = whole(pad_to_compile_shape(ids, source_limit))
        return tokens[:rows], scores[:rows]

    settings = dict(temperature=1.0, top_k=None, top_p=None, seed=None)
    search = make_search(options, settings, None)

    @tf.function(input_signature=spec, autograph=False)
    def xla_step(ids):
        rows = tf.shape(ids)[0]
        # Source lengths bucketed as the XLA export does (rows are
        # bucketed per step, after finished sentences leave).
        ids = pad_to_compile_shape(ids, source_limit)[:rows]
        step, state = fused_decoder_step(
            model, ids, options.max_length, search.rows_per_sentence, False, weights
        )
        step = bucketed_xla_step(step, search.rows_per_sentence)
        tokens, scores = search(
            SearchInputs(
                step=step, state=state, batch=rows, max_length=options.max_length,
                start_id=start_id, end_id=end_id, vocab=model.config.tgt_vocab_size,
                empty=tf.reduce_all(tf.equal(ids, PADDING_ID), axis=1),
                restrict=None, compact=True, n_best=1,
            )
        )  # fmt: skip
        return tokens[:, 0], scores[:, 0]

    return {"graph": graph, "xla_search": xla_search, "xla_step": xla_step}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-sentences", type=int, default=30)
    parser.add_argument("--method", choices=["beam", "greedy"], default="beam")
    parser.add_argument("--early-stopping", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)

    from keras_tfm.constants import PADDING_ID
    from keras_tfm.data.text_files import read_parallel
    from keras_tfm.job.run_directory import RunDirectory
    from keras_tfm.job.train import data_directory

    run = RunDirectory(args.run_dir).load()
    model = run.model
    config = run.config
    if args.data_dir:
        config = config.updated({"data.data_dir": args.data_dir})
    sources, _ = read_parallel(
        data_directory(config, RunDirectory(args.run_dir)),
        "test",
        config.data.src,
        config.data.tgt,
    )
    sources = sources[: args.sentences]
    options = config.evaluation.decoding.replace(
        method=args.method, early_stopping=args.early_stopping
    )
    src, tgt = model.source_tokenizer, model.target_tokenizer
    source_limit = model.config.max_length
    ragged = src.tokenize_source(tf.constant(sources), source_limit)
    ids = ragged.to_tensor(default_value=PADDING_ID).numpy()
    lengths = ragged.row_lengths().numpy()

    def batch_of(start, stop):
        return ids[start:stop, : max(int(lengths[start:stop].max()), 1)]

    batches = [
        batch_of(i, i + args.batch_size)
        for i in range(0, len(sources), args.batch_size)
    ]
    singles = [batch_of(i, i + 1) for i in range(args.latency_sentences)]
    variants = build_variants(model, options, tgt.start_id, tgt.end_id, source_limit)

    tokens, warmup = {}, {}
    for name, function in variants.items():
        began = time.perf_counter()
        outputs = [function(batch)[0].numpy() for batch in batches + singles]
        warmup[name] = time.perf_counter() - began
        tokens[name] = outputs

    def equal(a, b):
        width = max(a.shape[1], b.shape[1])
        pad = [np.pad(x, [[0, 0], [0, width - x.shape[1]]]) for x in (a, b)]
        return np.array_equal(*pad)

    rates = {name: [] for name in variants}
    latencies = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, function in variants.items():
            began = time.perf_counter()
            for batch in batches:
                function(batch)[0].numpy()
            rates[name].append(len(sources) / (time.perf_counter() - began))
            for single in singles:
                began = time.perf_counter()
                function(single)[0].numpy()
                latencies[name].append(1000 * (time.perf_counter() - began))

    print(
        f"{args.run_dir}: {len(sources)} sentences, batch {args.batch_size}, "
        f"{args.method} {options.beam_size if args.method == 'beam' else ''}"
        f"{' early_stopping' if args.early_stopping else ''}, {args.rounds} rounds"
    )
    print(
        "| variant | sentences/s | p50 ms (batch 1) | p95 ms | "
        "first pass s (compiles) | tokens equal to graph |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name in variants:
        same = all(equal(a, b) for a, b in zip(tokens[name], tokens["graph"]))
        lat = sorted(latencies[name])
        print(
            f"| {name} | {statistics.median(rates[name]):,.1f} | "
            f"{statistics.median(lat):.1f} | {lat[int(0.95 * (len(lat) - 1))]:.1f} | "
            f"{warmup[name]:.1f} | {'yes' if same else 'NO'} |"
        )


if __name__ == "__main__":
    main()
