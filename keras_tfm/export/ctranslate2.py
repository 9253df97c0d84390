"""Export a trained Transformer as a CTranslate2 model directory.

CTranslate2 is the inference engine many NMT deployments serve with on CPUs
(`pip install "keras-tfm[ctranslate2]"`). `export_ctranslate2` fills its
`TransformerSpec` with the model's weights, in the layout CTranslate2 expects
(output features x input features), and writes the directory with
`model.bin`, `config.json` and the two vocabularies (the SentencePiece
pieces, id for id). What differs between the two implementations, and how
the export reconciles it:

* Positions: keras_tfm interleaves sines and cosines (column 2i sin, 2i+1
  cos), CTranslate2's built-in table concatenates them. The export writes
  keras_tfm's own table for the model's `max_length` positions.
* Layer-norm epsilon: written to the model's config (keras_tfm defaults to
  1e-6, CTranslate2's own default for this spec differs by release).
* The source end token: keras_tfm's encoder reads `pieces + </s>`; the
  config sets `add_source_eos`, so CTranslate2 appends it to the tokens it
  is given.
* Padding: keras_tfm never generates id 0 (`<pad>`) and leaves it out of
  its scores' softmax. The output projection gets a bias of -1e9 for that id
  (the only change to the weights), so CTranslate2 does the same.
* Decoding: pass `min_decoding_length=0` (keras_tfm may end at once) and
  `max_decoding_length` equal to keras_tfm's `max_length`
  (`decoding_options` gives both). Its length penalty is not GNMT's, so beam
  search scores, and sometimes tokens, differ; greedy tokens match.

The model directory is written under a temporary name and renamed into
place, so a reader never sees half of one.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from keras_tfm.constants import MASK_FILL_VALUE, PADDING_ID
from keras_tfm.layers.positional_encoding import sinusoidal_positions

__all__ = ["export_ctranslate2", "decoding_options"]


def decoding_options(max_length):
    """`ctranslate2.Translator.translate_batch` length options matching
    keras_tfm's `generate(max_length=max_length)`."""
    return {"min_decoding_length": 0, "max_decoding_length": max_length}


def _array(variable):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


def _linear(spec, kernel, bias=None):
    """`kernel` (in, out) as CTranslate2's (out, in) weight, plus its bias."""
    spec.weight = np.ascontiguousarray(kernel.T)
    if bias is not None:
        spec.bias = bias


def _norm(spec, layer):
    spec.gamma = _array(layer.gamma)
    spec.beta = _array(layer.beta)


def _attention(spec, attention, norm, cross):
    """One `MultiHeadAttention`: fused Q/K/V (self) or Q and fused K/V (cross)."""

    def flat(dense):
        kernel = _array(dense.kernel)
        bias = _array(dense.bias) if attention.use_bias else None
        width = kernel.shape[1] * kernel.shape[2]
        return kernel.reshape(-1, width), None if bias is None else bias.reshape(-1)

    query, key, value = (
        flat(d)
        for d in (attention.query_dense, attention.key_dense, attention.value_dense)
    )
    groups = [[query], [key, value]] if cross else [[query, key, value]]
    for linear, group in zip(spec.linear, groups):
        kernel = np.concatenate([k for k, _ in group], axis=1)
        bias = None if group[0][1] is None else np.concatenate([b for _, b in group])
        _linear(linear, kernel, bias)
    output = attention.output_dense
    kernel = _array(output.kernel)
    _linear(
        spec.linear[-1],
        kernel.reshape(-1, kernel.shape[-1]),
        _array(output.bias) if attention.use_bias else None,
    )
    _norm(spec.layer_norm, norm)


def _feed_forward(spec, feed_forward, norm):
    inner, outer = feed_forward.inner_dense, feed_forward.output_dense
    _linear(spec.linear_0, _array(inner.kernel), _array(inner.bias))
    _linear(spec.linear_1, _array(outer.kernel), _array(outer.bias))
    _norm(spec.layer_norm, norm)


def _activation(stack):
    import keras
    from ctranslate2.specs import common_spec

    name = keras.activations.serialize(stack.activation)
    name = name if isinstance(name, str) else name.get("config", name)
    activations = {
        "relu": common_spec.Activation.RELU,
        "gelu": common_spec.Activation.GELU,
        "swish": common_spec.Activation.SWISH,
        "silu": common_spec.Activation.SWISH,
    }
    if name not in activations:
        raise ValueError(
            f"export_ctranslate2: activation {name!r} has no CTranslate2 equivalent"
        )
    return activations[name]


def build_spec(model, src_tokenizer, tgt_tokenizer):
    """The filled `ctranslate2.specs.TransformerSpec` of a keras_tfm model."""
    from ctranslate2.specs import transformer_spec

    encoder, decoder = model.encoder, model.decoder
    source_embedding, target_embedding = model.source_embedding, model.target_embedding
    if encoder.pre_norm != decoder.pre_norm:
        raise ValueError("export_ctranslate2: encoder and decoder must share pre_norm")
    spec = transformer_spec.TransformerSpec.from_config(
        (encoder.num_layers, decoder.num_layers),
        encoder.num_heads,
        pre_norm=encoder.pre_norm,
        activation=_activation(encoder),
    )
    d_model = source_embedding.d_model
    positions = np.asarray(
        sinusoidal_positions(
            np.arange(max(encoder.max_length, decoder.max_length)), d_model
        )
    )
    for stack, stack_spec, embedding in (
        (encoder, spec.encoder, source_embedding),
        (decoder, spec.decoder, target_embedding),
    ):
        embeddings = stack_spec.embeddings
        embeddings = embeddings[0] if isinstance(embeddings, list) else embeddings
        embeddings.weight = _array(embedding.embeddings)
        stack_spec.scale_embeddings = bool(embedding.scale)
        stack_spec.position_encodings.encodings = positions[: stack.max_length]
        if stack.pre_norm:
            _norm(stack_spec.layer_norm, stack.final_norm)
    for layer, layer_spec in zip(encoder.encoder_layers, spec.encoder.layer):
        _attention(
            layer_spec.self_attention,
            layer.self_attention,
            layer.self_attention_norm,
            cross=False,
        )
        _feed_forward(layer_spec.ffn, layer.feed_forward, layer.feed_forward_norm)
    for layer, layer_spec in zip(decoder.decoder_layers, spec.decoder.layer):
        _attention(
            layer_spec.self_attention,
            layer.self_attention,
            layer.self_attention_norm,
            cross=False,
        )
        _attention(
            layer_spec.attention,
            layer.cross_attention,
            layer.cross_attention_norm,
            cross=True,
        )
        _feed_forward(layer_spec.ffn, layer.feed_forward, layer.feed_forward_norm)

    output = model.output_logits
    if output is not None:
        kernel = _array(output.kernel)
        bias = (
            _array(output.bias)
            if output.use_bias
            else np.zeros(kernel.shape[1], np.float32)
        )
    else:  # tied to the target embedding: logits = hidden @ E^T
        kernel = _array(target_embedding.embeddings).T
        bias = np.zeros(kernel.shape[1], np.float32)
    bias = bias.copy()
    bias[PADDING_ID] = MASK_FILL_VALUE  # never generate padding
    _linear(spec.decoder.projection, kernel, bias)

    spec.config.layer_norm_epsilon = float(encoder.layer_norm_epsilon)
    spec.config.add_source_eos = True
    for tokenizer, register in (
        (src_tokenizer, spec.register_source_vocabulary),
        (tgt_tokenizer, spec.register_target_vocabulary),
    ):
        register(tokenizer.pieces())
    pieces = tgt_tokenizer.pieces()
    spec.config.unk_token = pieces[tgt_tokenizer.unk_id]
    spec.config.bos_token = pieces[tgt_tokenizer.start_id]
    spec.config.eos_token = pieces[tgt_tokenizer.end_id]
    spec.config.decoder_start_token = pieces[tgt_tokenizer.start_id]
    return spec


def export_ctranslate2(
    model, src_tokenizer, tgt_tokenizer, output_dir, quantization=None
):
    """Writes a CTranslate2 model directory and returns its path.

    Args:
        model: a `keras_tfm.build_transformer` model.
        src_tokenizer, tgt_tokenizer: its `Tokenizer`s.
        output_dir: the directory to create (it must not exist).
        quantization: None (float32 weights) or a CTranslate2 quantization
            ("int8", "int8_float32", "bfloat16", ...).

    Raises:
        FileExistsError: `output_dir` exists (it is left untouched).
        ValueError: the model has a setting CTranslate2 cannot express.
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; it is left untouched")
    spec = build_spec(model, src_tokenizer, tgt_tokenizer)
    spec.validate()
    spec.optimize(quantization=quantization)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        spec.save(str(temp))
        os.chmod(temp, 0o755)
        os.rename(temp, output_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return output_dir
