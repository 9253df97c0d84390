"""Sentences in, translations out: tokenizers around compiled decoding."""

from keras_tfm.constants import PADDING_ID
from keras_tfm.decoding.compile_shapes import padded_length, padded_rows
from keras_tfm.decoding.compiled import make_generate_fn
from keras_tfm.decoding.decode import decoding_options


def make_translator(model, src_tokenizer, tgt_tokenizer, options=None, batch_size=64):
    """`list[str] -> list[str]` through the tokenizers and compiled decoding.

    Args:
        model: a `keras_tfm.models.Transformer`.
        src_tokenizer, tgt_tokenizer: its `keras_tfm.text.Tokenizer`s (the
            source side appends the end id, as training data does).
        options: `DecodingOptions` (default: the paper's beam search; its
            `max_length` defaults to the model's).
        batch_size: sentences decoded at once.
    """
    import tensorflow as tf  # the tokenizers are TensorFlow ops

    options = decoding_options(options).for_model(model.config.max_length)
    generate_fn = make_generate_fn(
        model, options, start_id=tgt_tokenizer.start_id, end_id=tgt_tokenizer.end_id
    )
    source_limit = model.config.max_length

    def translate(sentences):
        outputs = []
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start : start + batch_size]
            ids = src_tokenizer.tokenize_source(tf.constant(chunk), source_limit)
            # A few fixed shapes: each new one traces and compiles again.
            rows = padded_rows(len(chunk), batch_size)
            length = padded_length(int(ids.bounding_shape()[1]), source_limit)
            ids = ids.to_tensor(default_value=PADDING_ID, shape=[rows, length])
            tokens, _ = generate_fn(ids)
            tokens = tf.convert_to_tensor(tokens)[: len(chunk)]
            text = tgt_tokenizer.detokenize(tokens)
            outputs.extend(t.decode("utf-8") for t in text.numpy())
        return outputs

    return translate
