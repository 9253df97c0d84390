"""First-request latency of an export after load, with and without its
warmup requests replayed, against the steady state.

    python benchmarks/first_request.py SAVED_MODEL_DIR [--repeats 20]

Each case runs in a fresh process that imports TensorFlow, TensorFlow Text
and TF Serving's protos only, loads the `serve` MetaGraph into a TF1
`Session` (as the C++ model server does) and times:

* `load`: the loader call;
* `warmup`: replaying `assets.extra/tf_serving_warmup_requests` (what TF
  Serving does before it marks a version available), when asked;
* `first`: the first request after that, one sentence;
* `steady`: the median of `--repeats` more requests of that sentence.

Each request is one sentence of the test split (`--sentence`), at batch 1.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
THREADS = 2


def client(path, sentence, replay, repeats):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=THREADS, inter_op_parallelism_threads=THREADS
    )
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=config)
    start = time.perf_counter()
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    load = time.perf_counter() - start
    signatures = meta.signature_def

    def run(signature_name, inputs):
        signature = signatures[signature_name or "serving_default"]
        feed = {signature.inputs[k].name: v for k, v in inputs.items()}
        fetches = {k: v.name for k, v in signature.outputs.items()}
        return session.run(fetches, feed)

    warmup = None
    if replay:
        from tensorflow_serving.apis import prediction_log_pb2

        start = time.perf_counter()
        records = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
        for record in tf.compat.v1.io.tf_record_iterator(records):
            request = prediction_log_pb2.PredictionLog.FromString(record)
            request = request.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            run(request.model_spec.signature_name, inputs)
        warmup = time.perf_counter() - start
    inputs = {"sentences": [sentence.encode("utf-8")]}
    times = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        run("serving_default", inputs)
        times.append(time.perf_counter() - start)
    return dict(
        load=load, warmup=warmup, first=times[0], steady=statistics.median(times[1:])
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("saved_model")
    parser.add_argument("--sentence", default="Ein Mann fährt mit dem Fahrrad.")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--client", choices=["cold", "warm"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        answer = client(
            args.saved_model, args.sentence, args.client == "warm", args.repeats
        )
        print(json.dumps(answer))
        return
    print(f"{'':6} {'load s':>8} {'warmup s':>9} {'first ms':>9} {'steady ms':>10}")
    for case in ("cold", "warm"):
        output = subprocess.run(
            [sys.executable, __file__, args.saved_model, "--client", case,
             "--sentence", args.sentence, "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        r = json.loads(output.strip().splitlines()[-1])
        warmup = "-" if r["warmup"] is None else f"{r['warmup']:.2f}"
        print(
            f"{case:6} {r['load']:8.2f} {warmup:>9} {r['first'] * 1e3:9.1f} "
            f"{r['steady'] * 1e3:10.1f}"
        )


if __name__ == "__main__":
    main()
