"""`TransformerConfig`: a model's sizes and options, validated on construction."""

import dataclasses

from keras_tfm.errors import FieldError, check_int

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
        FieldError (a ValueError): naming the offending field.
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
        owner = type(self).__name__
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
            check_int(owner, name, getattr(self, name), 1)
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not 0 <= value < 1:
                raise FieldError(owner, name, f"must be in [0, 1), got {value!r}")
        for name in ("share_embeddings", "tie_output", "pre_norm"):
            if not isinstance(getattr(self, name), bool):
                raise FieldError(
                    owner, name, f"must be true or false, got {getattr(self, name)!r}"
                )
        if not isinstance(self.activation, str):
            raise FieldError(
                owner, "activation", f"must be a string, got {self.activation!r}"
            )
        if self.d_model % self.num_heads:
            raise FieldError(
                owner,
                "d_model",
                f"({self.d_model}) is not divisible by num_heads ({self.num_heads})",
            )
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise FieldError(
                owner,
                "share_embeddings",
                "needs src_vocab_size == tgt_vocab_size, got "
                f"{self.src_vocab_size} and {self.tgt_vocab_size}",
            )
        epsilon = self.layer_norm_epsilon
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
            raise FieldError(
                owner, "layer_norm_epsilon", f"must be a number, got {epsilon!r}"
            )
        if epsilon <= 0:
            raise FieldError(owner, "layer_norm_epsilon", f"must be > 0, got {epsilon}")

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
            raise FieldError(cls.__name__, unknown[0], "is not a field")
        for name in ("src_vocab_size", "tgt_vocab_size"):
            if name not in values:
                raise FieldError(cls.__name__, name, "is required")
        return cls(**values)

    def to_dict(self):
        return dataclasses.asdict(self)
