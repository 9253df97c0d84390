"""Runs an exported SavedModel the way TensorFlow Serving does.

Imports only TensorFlow and TensorFlow Text (never keras or keras_tfm),
loads the `serve` MetaGraph into a TF1 `Session` with
`tf.compat.v1.saved_model.loader.load`, reads the SignatureDefs and feeds
and fetches tensors by the names the SignatureDef gives, as the C++ model
server's Predict API does.

    python tests/support/scripts/serving_client.py SAVED_MODEL_DIR REQUEST.json \
        RESPONSE.json

REQUEST.json:
    {"batches": {NAME: [SENTENCE, ...], ...},       # serving_default
     "id_batches": {NAME: [[ID, ...], ...], ...},   # translate_ids (optional)
     "repeat": {"batch": NAME, "warmup": 5, "count": 50},   # optional
     "replay_warmup": true}   # optional: run assets.extra's warmup requests
A SENTENCE is a str, or {"base64": ...} for raw bytes (e.g. invalid UTF-8).

RESPONSE.json:
    {"imported": [...],             # of keras, keras_tfm, tensorflow, tensorflow_text
     "imported_by_tensorflow": [...],  # those already there after `import tensorflow`
     "ops": {"core": [...], "tensorflow_text": [...], "unregistered": [...]},
     "signatures": {NAME: {"inputs": {KEY: {"name", "dtype", "shape"}},
                           "outputs": {...}}},
     "results": {NAME: {"translations": [{"text", "base64", "utf8"}...],
                        "scores": [...], "shapes": {KEY: [...]},
                        "dtypes": {KEY: ...}}},
     "id_results": {NAME: {"token_ids": [[...]], "scores": [...]}},
     "rss": {"before": BYTES, "after": BYTES, "count": N},
     "warmup": [{"signature_name", "sentences": [...], "translations": [...]}]}

The warmup requests are replayed first, as TF Serving does at load: each
`PredictionLog` record's `PredictRequest` inputs are fed by the names its
signature gives.
"""

import base64
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


WATCHED = ("keras", "keras_tfm", "tensorflow", "tensorflow_text")
IMPORTED_BY_TENSORFLOW = set()


def op_types(saved_model_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as file:
        proto.ParseFromString(file.read())
    types, functions = set(), set()
    for meta_graph in proto.meta_graphs:
        graph = meta_graph.graph_def
        types.update(node.op for node in graph.node)
        for function in graph.library.function:
            functions.add(function.signature.name)
            types.update(node.op for node in function.node_def)
    return sorted(types - functions)


def classify_ops(saved_model_dir):
    """Which op types core TF registers, and which need TensorFlow Text."""
    import tensorflow  # noqa: F401
    from tensorflow.python.framework import op_def_registry

    # `import tensorflow` itself imports keras (for `tf.keras`); record it
    # so that the caller can tell that apart from an import of ours.
    IMPORTED_BY_TENSORFLOW.update(name for name in WATCHED if name in sys.modules)

    assert "tensorflow_text" not in sys.modules, "tensorflow_text imported too early"
    types = op_types(saved_model_dir)
    core = [op for op in types if op_def_registry.get(op) is not None]
    import tensorflow_text  # noqa: F401

    rest = [op for op in types if op not in core]
    text = [op for op in rest if op_def_registry.get(op) is not None]
    unregistered = [op for op in rest if op not in text]
    return {"core": core, "tensorflow_text": text, "unregistered": unregistered}


def decode_sentence(item):
    if isinstance(item, dict):
        return base64.b64decode(item["base64"])
    return item.encode("utf-8")


def encode_text(value):
    try:
        text, utf8 = value.decode("utf-8"), True
    except UnicodeDecodeError:
        text, utf8 = value.decode("utf-8", "replace"), False
    return {
        "text": text,
        "base64": base64.b64encode(value).decode("ascii"),
        "utf8": utf8,
    }


def tensor_info(info):
    import tensorflow as tf

    shape = None
    if not info.tensor_shape.unknown_rank:
        shape = [dim.size for dim in info.tensor_shape.dim]
    dtype = tf.dtypes.as_dtype(info.dtype).name if info.dtype else None
    return {"name": info.name, "dtype": dtype, "shape": shape}


def rss_bytes():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def replay_warmup(session, signatures, saved_model_dir):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(saved_model_dir, "assets.extra", "tf_serving_warmup_requests")
    replayed = []
    for record in tf.compat.v1.io.tf_record_iterator(path):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        signature = signatures[request.model_spec.signature_name or "serving_default"]
        feed = {
            signature.inputs[key].name: tf.make_ndarray(tensor)
            for key, tensor in request.inputs.items()
        }
        fetches = {key: info.name for key, info in signature.outputs.items()}
        outputs = session.run(fetches, feed_dict=feed)
        replayed.append(
            {
                "signature_name": request.model_spec.signature_name,
                "sentences": [
                    s.decode("utf-8")
                    for s in tf.make_ndarray(request.inputs["sentences"])
                ],
                "translations": [encode_text(t) for t in outputs["translations"]],
            }
        )
    return replayed


def main(saved_model_dir, request_path, response_path):
    with open(request_path, encoding="utf-8") as file:
        request = json.load(file)
    response = {"ops": classify_ops(saved_model_dir)}

    import numpy as np
    import tensorflow as tf

    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(
            session, ["serve"], saved_model_dir
        )
        signatures = meta_graph.signature_def
        response["signatures"] = {
            key: {
                "method_name": signature.method_name,
                "inputs": {k: tensor_info(v) for k, v in signature.inputs.items()},
                "outputs": {k: tensor_info(v) for k, v in signature.outputs.items()},
            }
            for key, signature in signatures.items()
        }

        serving = signatures["serving_default"]
        feed_name = serving.inputs["sentences"].name
        fetches = {key: info.name for key, info in serving.outputs.items()}

        if request.get("replay_warmup"):
            response["warmup"] = replay_warmup(session, signatures, saved_model_dir)

        def translate(sentences):
            array = np.array(sentences, dtype=object).reshape([len(sentences)])
            return session.run(fetches, feed_dict={feed_name: array})

        results = {}
        for name, sentences in request.get("batches", {}).items():
            outputs = translate([decode_sentence(s) for s in sentences])
            results[name] = {
                "translations": [encode_text(t) for t in outputs["translations"]],
                "scores": [float(s) for s in outputs["scores"]],
                "shapes": {k: list(v.shape) for k, v in outputs.items()},
                "dtypes": {k: v.dtype.name for k, v in outputs.items()},
            }
        response["results"] = results

        if request.get("id_batches"):
            ids_signature = signatures["translate_ids"]
            ids_feed = ids_signature.inputs["source_ids"].name
            ids_fetches = {k: v.name for k, v in ids_signature.outputs.items()}
            id_results = {}
            for name, rows in request["id_batches"].items():
                width = max((len(row) for row in rows), default=0)
                ids = np.zeros((len(rows), width), np.int32)
                for i, row in enumerate(rows):
                    ids[i, : len(row)] = row
                outputs = session.run(ids_fetches, feed_dict={ids_feed: ids})
                id_results[name] = {
                    "token_ids": outputs["token_ids"].tolist(),
                    "scores": [float(s) for s in outputs["scores"]],
                    "dtypes": {k: v.dtype.name for k, v in outputs.items()},
                }
            response["id_results"] = id_results

        repeat = request.get("repeat")
        if repeat:
            sentences = [
                decode_sentence(s) for s in request["batches"][repeat["batch"]]
            ]
            for _ in range(repeat.get("warmup", 5)):
                translate(sentences)
            before = rss_bytes()
            for _ in range(repeat["count"]):
                translate(sentences)
            response["rss"] = {
                "before": before,
                "after": rss_bytes(),
                "count": repeat["count"],
            }

    response["imported"] = sorted(name for name in WATCHED if name in sys.modules)
    response["imported_by_tensorflow"] = sorted(IMPORTED_BY_TENSORFLOW)
    with open(response_path, "w", encoding="utf-8") as file:
        json.dump(response, file, ensure_ascii=False, indent=1)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
