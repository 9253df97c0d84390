"""`TransformerConfig`: validation, presets and its dict round trip."""

import pytest
from support.models import small_config

from keras_tfm import TransformerConfig


@pytest.mark.parametrize(
    "field, value",
    [
        ("d_model", 30),
        ("num_heads", 0),
        ("src_vocab_size", 0),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("attention_dropout", 1.5),
        ("d_ff", 0),
        ("num_encoder_layers", 0),
        ("max_length", 0),
    ],
)
def test_config_validation_names_the_field(field, value):
    values = dict(src_vocab_size=10, tgt_vocab_size=10, d_model=32, num_heads=4)
    values[field] = value
    with pytest.raises(ValueError, match=field):
        TransformerConfig(**values)


def test_config_presets_and_unknown_fields():
    big = TransformerConfig.preset("big", src_vocab_size=100, tgt_vocab_size=100)
    assert (big.d_model, big.num_heads, big.d_ff, big.dropout) == (1024, 16, 4096, 0.3)
    with pytest.raises(ValueError, match="share_embeddings"):
        TransformerConfig.preset("base", src_vocab_size=10, tgt_vocab_size=12)
    with pytest.raises(ValueError, match="'huge'"):
        TransformerConfig.preset("huge", src_vocab_size=10, tgt_vocab_size=10)
    with pytest.raises(ValueError, match="widht is not a field"):
        TransformerConfig.from_dict(
            {"src_vocab_size": 5, "tgt_vocab_size": 5, "widht": 3}
        )
    config = small_config()
    assert TransformerConfig.from_dict(config.to_dict()) == config
