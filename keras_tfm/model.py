"""The functional encoder-decoder model."""

import keras

from keras_tfm.config import TransformerConfig
from keras_tfm.layers import Decoder, Encoder, OutputLogits, TokenEmbedding


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
