"""Models saved by keras_tfm 0.1.0, which were plain functional models.

Their `.keras` files load with `keras.models.load_model` (every layer is
registered); `upgrade_model` turns the loaded model into a `Transformer`
with the same weights, reading its configuration from the layers, which
0.1.0 named: `source_embedding`/`target_embedding` (or `shared_embedding`),
`encoder`, `decoder` and, unless the output was tied, `output_logits`.
"""

import keras

from keras_tfm.models.transformer import Transformer
from keras_tfm.models.transformer_config import TransformerConfig


def upgrade_model(model):
    """`model` as a `Transformer`: itself if it is one, else a new one with
    the weights of a keras_tfm 0.1.0 functional model."""
    if isinstance(model, Transformer):
        return model
    layers = {layer.name: layer for layer in model.layers}
    missing = {"encoder", "decoder"} - set(layers)
    if missing:
        raise ValueError(
            f"{model.name!r} is not a keras_tfm Transformer: it has no layer "
            f"named {sorted(missing)[0]!r}"
        )
    shared = layers.get("shared_embedding")
    source_embedding = shared or layers["source_embedding"]
    target_embedding = shared or layers["target_embedding"]
    encoder, decoder = layers["encoder"], layers["decoder"]
    activation = keras.activations.serialize(encoder.activation)
    config = TransformerConfig(
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
        share_embeddings=shared is not None,
        tie_output="output_logits" not in layers,
        pre_norm=encoder.pre_norm,
        layer_norm_epsilon=encoder.layer_norm_epsilon,
    )
    upgraded = Transformer(config, name=model.name)
    pairs = [
        (upgraded.source_embedding, source_embedding),
        (upgraded.encoder, encoder),
        (upgraded.decoder, decoder),
    ]
    if shared is None:
        pairs.append((upgraded.target_embedding, target_embedding))
    if upgraded.output_logits is not None:
        pairs.append((upgraded.output_logits, layers["output_logits"]))
    for new, old in pairs:
        new.set_weights(old.get_weights())
    return upgraded
