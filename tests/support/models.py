"""A small `TransformerConfig` for model tests."""

from keras_tfm import TransformerConfig


def small_config(**overrides):
    """d_model 32, 4 heads, 2 + 2 layers, vocabularies of 40, dropout 0.1;
    `overrides` replace any of them."""
    values = dict(
        src_vocab_size=40,
        tgt_vocab_size=40,
        d_model=32,
        num_heads=4,
        d_ff=64,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dropout=0.1,
        max_length=32,
    )
    values.update(overrides)
    return TransformerConfig(**values)
