"""Model hyper-parameters, validated on construction."""

import dataclasses

PRESETS = {
    # Small enough to train on a laptop CPU in minutes.
    "tiny": dict(
        d_model=64,
        num_heads=4,
        d_ff=256,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dropout=0.1,
    ),
    # Table 3 of the paper, rows "base" and "big". Both share one
    # source/target vocabulary and tie it to the output projection.
    "base": dict(
        d_model=512,
        num_heads=8,
        d_ff=2048,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dropout=0.1,
        share_embeddings=True,
        tie_output=True,
    ),
    "big": dict(
        d_model=1024,
        num_heads=16,
        d_ff=4096,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dropout=0.3,
        share_embeddings=True,
        tie_output=True,
    ),
}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Sizes and options of an encoder-decoder Transformer.

    Args:
        src_vocab_size: source vocabulary size, padding id 0 included.
        tgt_vocab_size: target vocabulary size, padding id 0 included.
        d_model: model width.
        num_heads: attention heads; must divide d_model.
        d_ff: feed-forward inner width.
        num_encoder_layers, num_decoder_layers: stack depths.
        dropout: residual and embedding dropout, in [0, 1).
        attention_dropout: dropout on attention weights, in [0, 1).
        activation: feed-forward activation name.
        max_length: longest source or target sequence, in tokens.
        share_embeddings: one embedding matrix for source and target
            (requires equal vocabulary sizes).
        tie_output: reuse the target embedding as the output projection.
        pre_norm: pre-LN blocks instead of the paper's post-LN.
        layer_norm_epsilon: LayerNorm epsilon.

    Raises:
        ValueError: naming the offending field.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    num_heads: int = 8
    d_ff: int = 2048
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: str = "relu"
    max_length: int = 256
    share_embeddings: bool = False
    tie_output: bool = False
    pre_norm: bool = False
    layer_norm_epsilon: float = 1e-6

    def __post_init__(self):
        for name in (
            "src_vocab_size",
            "tgt_vocab_size",
            "d_model",
            "num_heads",
            "d_ff",
            "num_encoder_layers",
            "num_decoder_layers",
            "max_length",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"TransformerConfig.{name} must be an integer, got {value!r}"
                )
            if value < 1:
                raise ValueError(f"TransformerConfig.{name} must be >= 1, got {value}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(
                    f"TransformerConfig.{name} must be in [0, 1), got {value!r}"
                )
        if self.d_model % self.num_heads:
            raise ValueError(
                f"TransformerConfig.d_model={self.d_model} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "TransformerConfig.share_embeddings needs src_vocab_size == "
                f"tgt_vocab_size, got {self.src_vocab_size} and "
                f"{self.tgt_vocab_size}"
            )
        if self.layer_norm_epsilon <= 0:
            raise ValueError(
                "TransformerConfig.layer_norm_epsilon must be > 0, got "
                f"{self.layer_norm_epsilon}"
            )

    @classmethod
    def preset(cls, name, **overrides):
        """The paper's `base` or `big` (or a `tiny` one), with overrides.

        >>> TransformerConfig.preset("base", src_vocab_size=37000,
        ...                          tgt_vocab_size=37000)
        """
        if name not in PRESETS:
            raise ValueError(
                f"TransformerConfig.preset: unknown preset {name!r}; choose "
                f"from {sorted(PRESETS)}"
            )
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a mapping, rejecting unknown keys by name."""
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"TransformerConfig: unknown field {unknown[0]!r}")
        for name in ("src_vocab_size", "tgt_vocab_size"):
            if name not in values:
                raise ValueError(f"TransformerConfig.{name} is required")
        return cls(**values)

    def to_dict(self):
        return dataclasses.asdict(self)
