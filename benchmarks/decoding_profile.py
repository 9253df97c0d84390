"""Where a decoding call spends its time: TensorFlow ops by type, from a
profiler trace that TensorBoard's Profile dashboard also opens.

    python benchmarks/decoding_profile.py [--model multi30k] [--method beam]
        [--batch 64] [--steps 20] [--logdir /tmp/decoding_profile]

Builds a model of the `--model` shape with random weights, traces
`generate` as the SavedModel export does (a TensorFlow graph, caches that
grow, finished sentences leaving the batch), and runs it with every
sentence forced to `--steps` tokens (the end token forbidden before), so
that each call does the same work. Three calls are traced with
`tf.profiler`; the table sums the executed ops by type per call and per
step. `tensorboard --logdir LOGDIR` shows the same trace in its Profile
dashboard (`pip install ".[profile]"` adds the plugin).
"""

import argparse
import collections
import glob
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHAPES = {
    "numbers": dict(
        src_vocab_size=256, tgt_vocab_size=256, d_model=128, num_heads=4,
        d_ff=512, num_encoder_layers=2, num_decoder_layers=2, max_length=32,
    ),
    "multi30k": dict(
        src_vocab_size=8000, tgt_vocab_size=8000, d_model=256, num_heads=4,
        d_ff=1024, num_encoder_layers=3, num_decoder_layers=3, max_length=64,
        share_embeddings=True, tie_output=True,
    ),
}  # fmt: skip
CALLS = 3


def op_table(logdir):
    """`{op_type: (count, microseconds)}` summed over the newest trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as file:
        space.ParseFromString(file.read())
    table = collections.defaultdict(lambda: [0, 0.0])
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                # TensorFlow op events are named "node_name:OpType".
                name = plane.event_metadata[event.metadata_id].name
                op = name.rsplit(":", 1)[-1] if ":" in name else ""
                if "::" in name or not op[:1].isupper():
                    continue
                table[op][0] += 1
                table[op][1] += event.duration_ps / 1e6
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(SHAPES), default="multi30k")
    parser.add_argument("--method", choices=["beam", "greedy"], default="beam")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--logdir", default="/tmp/decoding_profile")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_tfm import DecodingOptions, TransformerConfig, build_transformer
    from keras_tfm.decoding.generation import generate

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    keras.utils.set_random_seed(0)
    shape = SHAPES[args.model]
    model = build_transformer(TransformerConfig(**shape))
    options = DecodingOptions(method=args.method, beam_size=4, max_length=args.steps)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def decode(ids):
        return generate(
            model, ids, options, jit_compile=False, dynamic_shapes=True,
            min_length=args.steps - 1,
        )  # fmt: skip

    rng = np.random.default_rng(0)
    ids = rng.integers(4, shape["src_vocab_size"], (args.batch, 16)).astype("int32")
    ids[:, -1] = 3
    decode(ids)
    decode(ids)
    tf.profiler.experimental.start(args.logdir)
    for _ in range(CALLS):
        decode(ids)
    tf.profiler.experimental.stop()

    table = op_table(args.logdir)
    count = sum(c for c, _ in table.values()) / CALLS
    total = sum(us for _, us in table.values()) / CALLS
    print(
        f"{args.model}, {args.method}, batch {args.batch}, {args.steps} steps: "
        f"{count:.0f} ops per call ({count / args.steps:.0f} per step), "
        f"{total / 1e3:.1f} ms of op time per call"
    )
    print(f"{'op':24} {'per step':>9} {'ms per call':>12} {'share':>6}")
    for op, (n, us) in sorted(table.items(), key=lambda item: -item[1][1])[:20]:
        print(
            f"{op:24} {n / CALLS / args.steps:9.1f} {us / CALLS / 1e3:12.2f} "
            f"{us / CALLS / total:6.1%}"
        )
    print(f"trace: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
