"""Warmup requests that TF Serving replays when it loads an export.

TensorFlow optimises a signature's graph at its first run, and an XLA
export compiles once per padded input shape; either would otherwise land
on the first users' requests. TF Serving reads
`assets.extra/tf_serving_warmup_requests`, a TFRecord file of
`PredictionLog` protos, and runs each request before it marks the version
available, so that cost is paid at load time instead.
"""

from keras_tfm.decoding.compile_shapes import padded_length, padded_rows

WARMUP_FILE = "tf_serving_warmup_requests"
# The largest batch an XLA export is warmed up for: every power of two up to
# it is a bucket of its own.
WARMUP_MAX_BATCH = 64


def warmup_shapes(source_max_length, jit_compile):
    """`(batch, source_tokens)` pairs to warm up, end token included.

    A graph without XLA is optimised once, at its first run, whatever the
    shapes: two small requests. An XLA export compiles each padded batch
    and length bucket: one request per pair.
    """
    if not jit_compile:
        return [(1, min(8, source_max_length)), (8, min(16, source_max_length))]
    lengths = sorted(
        {padded_length(n, source_max_length) for n in range(1, source_max_length + 1)}
    )
    batches = sorted({padded_rows(b) for b in range(1, WARMUP_MAX_BATCH + 1)})
    return [(b, n) for b in batches for n in lengths]


def warmup_sentence(src_tokenizer, tokens):
    """A sentence that tokenizes to `tokens` ids, end included: one
    vocabulary piece repeated (the first that keeps its count when joined)."""
    import tensorflow as tf

    count = max(tokens - 1, 1)
    specials = {src_tokenizer.pad_id, src_tokenizer.unk_id}
    specials |= {src_tokenizer.start_id, src_tokenizer.end_id}
    text = None
    for piece in range(src_tokenizer.vocab_size):
        if piece in specials:
            continue
        ids = tf.constant([[piece] * count], tf.int32)
        text = src_tokenizer.detokenize(ids)[0]
        if src_tokenizer.tokenize([text]).row_lengths()[0] == count:
            break
    return text.numpy()


def write_warmup_requests(path, src_tokenizer, shapes, signature_name):
    """Writes one `PredictRequest` per `(batch, tokens)` in `shapes` to the
    TFRecord file `path`, for the signature `signature_name`."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch, tokens in shapes:
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = signature_name
            sentences = [warmup_sentence(src_tokenizer, tokens)] * batch
            request.inputs["sentences"].CopyFrom(
                tf.make_tensor_proto(sentences, dtype=tf.string)
            )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
