"""The functional encoder-decoder model."""

import keras

from keras_tfm.layers import Decoder, Encoder, OutputLogits, TokenEmbedding
from keras_tfm.models.transformer_config import TransformerConfig


def build_transformer(config):
    """Builds the Transformer as a functional `keras.Model`.

    Inputs: a dict `{"source": ids, "target": ids}` of int32 tensors
    `(batch, length)` of any length, 0 being padding. `target` is the
    decoder input (the shifted target, starting with the start token).
    Output: float32 logits `(batch, target_length, tgt_vocab_size)`.

    Layer names that generation and export rely on: `source_embedding`
    and `target_embedding` (one layer named `shared_embedding` when
    `share_embeddings`), `encoder`, `decoder`, and `output_logits` unless
    `tie_output`.
    """
    if isinstance(config, dict):
        config = TransformerConfig.from_dict(config)
    source = keras.Input(shape=(None,), dtype="int32", name="source")
    target = keras.Input(shape=(None,), dtype="int32", name="target")
    if config.share_embeddings:
        source_embedding = TokenEmbedding(
            config.src_vocab_size, config.d_model, name="shared_embedding"
        )
        target_embedding = source_embedding
    else:
        source_embedding = TokenEmbedding(
            config.src_vocab_size, config.d_model, name="source_embedding"
        )
        target_embedding = TokenEmbedding(
            config.tgt_vocab_size, config.d_model, name="target_embedding"
        )
    stack_args = dict(
        num_heads=config.num_heads,
        d_ff=config.d_ff,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation=config.activation,
        pre_norm=config.pre_norm,
        layer_norm_epsilon=config.layer_norm_epsilon,
        max_length=config.max_length,
    )
    encoder = Encoder(config.num_encoder_layers, name="encoder", **stack_args)
    decoder = Decoder(config.num_decoder_layers, name="decoder", **stack_args)

    memory = encoder(source_embedding(source))
    hidden = decoder(target_embedding(target), memory)
    if config.tie_output:
        logits = target_embedding(hidden, reverse=True)
    else:
        logits = OutputLogits(config.tgt_vocab_size, name="output_logits")(hidden)
    return keras.Model(
        inputs={"source": source, "target": target},
        outputs=logits,
        name="transformer",
    )


def transformer_parts(model):
    """The layers of a `build_transformer` model that decoding needs.

    Returns `(source_embedding, target_embedding, encoder, decoder,
    project)` where `project(hidden)` gives float32 logits.
    """
    names = {layer.name for layer in model.layers}
    if "shared_embedding" in names:
        source_embedding = target_embedding = model.get_layer("shared_embedding")
    else:
        source_embedding = model.get_layer("source_embedding")
        target_embedding = model.get_layer("target_embedding")
    if "output_logits" in names:
        project = model.get_layer("output_logits")
    else:

        def project(hidden):
            return target_embedding(hidden, reverse=True)

    return (
        source_embedding,
        target_embedding,
        model.get_layer("encoder"),
        model.get_layer("decoder"),
        project,
    )


def transformer_config_of(model):
    """The `TransformerConfig` a `build_transformer` model was built from."""
    source_embedding, target_embedding, encoder, decoder, _ = transformer_parts(model)
    activation = keras.activations.serialize(encoder.activation)
    return TransformerConfig(
        src_vocab_size=source_embedding.vocab_size,
        tgt_vocab_size=target_embedding.vocab_size,
        d_model=source_embedding.d_model,
        num_heads=encoder.num_heads,
        d_ff=encoder.d_ff,
        num_encoder_layers=encoder.num_layers,
        num_decoder_layers=decoder.num_layers,
        dropout=encoder.dropout,
        attention_dropout=encoder.attention_dropout,
        activation=activation if isinstance(activation, str) else activation["config"],
        max_length=encoder.max_length,
        share_embeddings=source_embedding is target_embedding,
        tie_output="output_logits" not in {layer.name for layer in model.layers},
        pre_norm=encoder.pre_norm,
        layer_norm_epsilon=encoder.layer_norm_epsilon,
    )


def with_dtype_policy(model, policy):
    """A copy of a `build_transformer` model under another dtype policy
    ("float32", "bfloat16", "mixed_bfloat16", ...), with the same weights
    (cast to the policy's variable dtype)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        copy = build_transformer(transformer_config_of(model))
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy
