"""`DecodingOptions`: how target sentences are decoded, defined once.

Its defaults are the paper's (section 6.1: beam search with 4 beams and
length penalty alpha = 0.6) and the model's own length limit;
`keras_tfm.generate`, the training job's `[evaluation]` and `[export]`
sections, `export_saved_model` and the `keras-tfm` commands all take their
defaults and checks from it.
"""

import dataclasses

from keras_tfm.decoding.searches import ALIASES, DETERMINISTIC_METHODS, METHODS
from keras_tfm.errors import FieldError, check_int


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
        early_stopping: beam search stops a sentence as soon as its best
            candidate of a step (by log-probability) ends and `n_best`
            hypotheses have finished, as CTranslate2 and OpenNMT do, rather
            than (the default, False) once no live beam can still beat the
            finished ones under the length penalty. Fewer steps, especially
            with a large length penalty; the result may differ.

    Raises:
        FieldError: naming the bad field.
    """

    # Each field's `help` is also its `keras-tfm` flag's help text.
    method: str = dataclasses.field(default="beam", metadata={"help": "search method"})
    beam_size: int = dataclasses.field(
        default=4, metadata={"help": "beams per sentence"}
    )
    length_penalty: float = dataclasses.field(
        default=0.6, metadata={"help": "GNMT length penalty alpha"}
    )
    max_length: int | None = dataclasses.field(
        default=None,
        metadata={"help": "most target tokens generated"},
    )
    early_stopping: bool = dataclasses.field(
        default=False,
        metadata={"help": "beam search: stop a sentence when its best candidate ends"},
    )

    def __post_init__(self):
        owner = type(self).__name__
        method = ALIASES.get(self.method, self.method)
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
        if not isinstance(self.early_stopping, bool):
            raise FieldError(
                owner,
                "early_stopping",
                f"must be true or false, got {self.early_stopping!r}",
            )

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

    def replace(self, **changes):
        """These options with `changes` (checked as on construction)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)
