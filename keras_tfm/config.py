"""Model and decoding settings, validated on construction (plain Python).

`TransformerConfig` holds a model's sizes and options. `DecodingOptions`
holds what shapes a decoding: the search method, the beam width, the GNMT
length penalty and the most tokens to generate. Its defaults are the
paper's (section 6.1: beam search with 4 beams and length penalty alpha =
0.6) and the model's own length limit; `keras_tfm.generate`, the training
job's `[evaluation]` and `[export]` sections, `export_saved_model` and the
`keras-tfm` commands all take their defaults and checks from it.
"""

import dataclasses


class FieldError(ValueError):
    """A bad value of one named field; `str()` reads "Owner.field problem"."""

    def __init__(self, owner, field, problem):
        self.owner, self.field, self.problem = owner, field, problem
        super().__init__(f"{owner}.{field} {problem}")


def check_int(owner, field, value, minimum):
    """`value` if it is an int (not a bool) >= `minimum`, else FieldError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FieldError(
            owner, field, f"must be an integer >= {minimum}, got {value!r}"
        )
    return value


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


# Every method `generate` runs, and the ones that give one answer per input
# (evaluation and serving use only those).
METHODS = ("beam", "greedy", "sample")
DETERMINISTIC_METHODS = ("beam", "greedy")
_ALIASES = {"beam_search": "beam", "sampling": "sample"}


@dataclasses.dataclass(frozen=True)
class DecodingOptions:
    """How target sentences are decoded.

    Args:
        method: "beam" (default), "greedy" or "sample" ("beam_search" and
            "sampling" are accepted as aliases).
        beam_size: beams per sentence for "beam" (default 4).
        length_penalty: alpha of the GNMT length penalty
            `((5 + length) / 6) ** alpha` that beam search divides scores by
            (default 0.6; 0 ranks by the raw log-probability).
        max_length: the most target tokens generated, end token included;
            None (default) means the model's `max_length`.

    Raises:
        FieldError: naming the bad field.
    """

    method: str = "beam"
    beam_size: int = 4
    length_penalty: float = 0.6
    max_length: int | None = None

    def __post_init__(self):
        owner = type(self).__name__
        method = _ALIASES.get(self.method, self.method)
        if method not in METHODS:
            raise FieldError(
                owner, "method", f"is unknown: {self.method!r}; choose from {METHODS}"
            )
        object.__setattr__(self, "method", method)
        check_int(owner, "beam_size", self.beam_size, 1)
        penalty = self.length_penalty
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)):
            raise FieldError(
                owner, "length_penalty", f"must be a number, got {penalty!r}"
            )
        if penalty < 0:
            raise FieldError(owner, "length_penalty", f"must be >= 0, got {penalty!r}")
        object.__setattr__(self, "length_penalty", float(penalty))
        if self.max_length is not None:
            check_int(owner, "max_length", self.max_length, 1)

    def for_model(self, model_max_length):
        """These options with `max_length` resolved against a model's limit.

        Raises:
            FieldError: when `max_length` exceeds `model_max_length`.
        """
        if self.max_length is None:
            return dataclasses.replace(self, max_length=int(model_max_length))
        if self.max_length > model_max_length:
            raise FieldError(
                type(self).__name__,
                "max_length",
                f"is {self.max_length}, more than the model's max_length "
                f"{model_max_length}",
            )
        return self

    def require_deterministic(self):
        """Raises FieldError for "sample" (evaluation and serving need one answer)."""
        if self.method not in DETERMINISTIC_METHODS:
            raise FieldError(
                type(self).__name__,
                "method",
                f"must be one of {DETERMINISTIC_METHODS} here, got {self.method!r}",
            )
        return self

    def to_dict(self):
        return dataclasses.asdict(self)
