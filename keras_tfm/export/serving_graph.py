"""The TensorFlow graph a SavedModel export serves: a `tf.Module` with the
model's variables, the tokenizers and the two signature functions."""

import keras

from keras_tfm.constants import PADDING_ID
from keras_tfm.decoding.compile_shapes import pad_to_compile_shape
from keras_tfm.decoding.fused_step import DecoderStepWeights
from keras_tfm.errors import ExportError

SERVING_SIGNATURE = "serving_default"
IDS_SIGNATURE = "translate_ids"


def _tf_variables(model):
    """The `tf.Variable`s under the model's `keras.Variable`s.

    Tracking the Keras wrappers instead would break TF1-style loading (TF
    Serving): Keras 3 exports each wrapper as a second graph variable,
    initialised from the first, and the checkpoint restores the wrapper's
    copy while the signature functions read the unrestored original.
    """
    return [_tf_variable(variable) for variable in model.variables]


def _tf_variable(variable):
    import tensorflow as tf

    value = getattr(variable, "_value", variable)
    if not isinstance(value, tf.Variable):
        raise ExportError(f"cannot export the variable {variable.path!r}")
    return value


def _step_weights(model, max_length):
    """The cached decoder step's weights, derived once here and saved as
    variables (a request then reads them as they are): the model's own
    variables where the step reads one unchanged, new ones otherwise."""
    import tensorflow as tf

    def variable(value):
        if isinstance(value, keras.Variable):
            return _tf_variable(value)
        return tf.Variable(value, trainable=False)

    return DecoderStepWeights(model, max_length).map(variable)


def _xla_decoding(decode, source_limit):
    """`decode` compiled by XLA, on inputs padded to a few shapes.

    XLA compiles once per input shape, at the first request of that shape
    (seconds each), so rows are padded to a power of two and lengths to a
    multiple of 16 (empty rows cost no decoding steps).
    """
    import tensorflow as tf

    compiled = tf.function(decode, jit_compile=True, autograph=False)

    def padded(ids):
        rows = tf.shape(ids)[0]
        tokens, scores = compiled(pad_to_compile_shape(ids, source_limit))
        return tokens[:rows], scores[:rows]

    return padded


def build_module(model, src_tokenizer, tgt_tokenizer, options):
    """The `tf.Module` to save and its two signature functions."""
    import tensorflow as tf

    from keras_tfm.decoding.generation import generate

    source_limit = options["source_max_length"]
    src_end = src_tokenizer.end_id
    decoding = options["decoding"]
    ids_kwargs = dict(start_id=tgt_tokenizer.start_id, end_id=tgt_tokenizer.end_id)
    step_weights = _step_weights(model, decoding.max_length)

    def decode_graph(ids, dynamic_shapes=True):
        # Plain TensorFlow graphs run with caches that grow step by step.
        return generate(
            model, ids, decoding, jit_compile=False, dynamic_shapes=dynamic_shapes,
            step_weights=step_weights, **ids_kwargs,
        )  # fmt: skip

    decode = decode_graph
    if options.get("jit_compile"):
        decode = _xla_decoding(
            lambda ids: decode_graph(ids, dynamic_shapes=False), source_limit
        )

    module = tf.Module(name="keras_tfm_translator")
    # Tracked so that tf.saved_model.save writes them: the weights the
    # graph reads and the two SentencePiece resources. The Keras model
    # itself is not tracked (the server does not need it).
    module.src_tokenizer = src_tokenizer
    module.tgt_tokenizer = tgt_tokenizer

    # No autograph: there is no Python control flow on tensors here, and
    # `generate` loops with an explicit `keras.ops.while_loop`.
    @tf.function(
        input_signature=[tf.TensorSpec([None, None], tf.int32, name="source_ids")],
        autograph=False,
    )
    def translate_ids(source_ids):
        ids = tf.cast(source_ids, tf.int32)
        width = tf.shape(ids)[1]
        # An empty width would leave the encoder nothing to attend to.
        ids = tf.pad(
            ids, [[0, 0], [0, tf.maximum(1 - width, 0)]], constant_values=PADDING_ID
        )
        # Cut rows longer than the model takes, keeping an end id last.
        ids = ids[:, :source_limit]
        cut = tf.logical_and(width > source_limit, ids[:, -1] != PADDING_ID)
        last = tf.where(cut, src_end, ids[:, -1])
        ids = tf.concat([ids[:, :-1], last[:, None]], axis=1)
        tokens, scores = decode(ids)
        return {
            "token_ids": tf.identity(tf.cast(tokens, tf.int32), name="token_ids"),
            "scores": tf.identity(tf.cast(scores, tf.float32), name="scores"),
        }

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="sentences")],
        autograph=False,
    )
    def serve(sentences):
        text = tf.strings.unicode_transcode(
            sentences,
            input_encoding="UTF-8",
            output_encoding="UTF-8",
            errors="replace",
            replacement_char=0xFFFD,
        )
        # An empty sentence stays an empty row: it translates to "".
        ids = src_tokenizer.tokenize_source(text, source_limit)
        outputs = translate_ids(ids.to_tensor(default_value=PADDING_ID))
        return {
            "translations": tf.identity(
                tgt_tokenizer.detokenize(outputs["token_ids"]), name="translations"
            ),
            "scores": tf.identity(outputs["scores"], name="scores"),
        }

    module.translate_ids = translate_ids
    module.serve = serve
    signatures = {
        SERVING_SIGNATURE: serve.get_concrete_function(),
        IDS_SIGNATURE: translate_ids.get_concrete_function(),
    }
    # Only the variables the signatures read: the decoder's own weights are
    # replaced by the step's (fused) ones and need not ship twice.
    read = {id(v) for f in signatures.values() for v in f.graph.variables}
    module.model_variables = [
        v for v in _tf_variables(model) + step_weights.tensors() if id(v) in read
    ]
    return module, signatures
