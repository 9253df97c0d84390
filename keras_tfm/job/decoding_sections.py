"""The training job's sections that decode: `[evaluation]` (the test split's
translations and scores) and `[export]` (decoding inside the SavedModel).

Both take `DecodingOptions`' fields as keys, with its defaults and checks,
and add their own. One frozen dataclass per section; the checks across
sections (decoding lengths against the model's) are `RunConfig`'s
(`keras_tfm.job.run_config`).
"""

import dataclasses

from keras_tfm.decoding.options import DETERMINISTIC_METHODS, DecodingOptions
from keras_tfm.errors import FieldError
from keras_tfm.export.options import EXPORT_DTYPES
from keras_tfm.job.config_file import check_choice, check_range

__all__ = ["EvaluationConfig", "ExportConfig"]


class _DecodingSection:
    """A section whose keys include `DecodingOptions`' fields (defaults and
    checks are `DecodingOptions`')."""

    section = None  # the TOML section, for messages

    def __post_init__(self):
        object.__setattr__(self, "method", self.decoding.method)

    @property
    def decoding(self):
        """These keys as `DecodingOptions`, checked for one answer per input."""
        try:
            return DecodingOptions(
                **{
                    field.name: getattr(self, field.name)
                    for field in dataclasses.fields(DecodingOptions)
                }
            ).require_deterministic()
        except FieldError as error:
            raise FieldError(self.section, error.field, error.problem) from None


# `DecodingOptions`' fields, as a section's keys.
_DecodingKeys = dataclasses.make_dataclass(
    "_DecodingKeys",
    [
        (field.name, field.type, dataclasses.field(default=field.default))
        for field in dataclasses.fields(DecodingOptions)
    ],
    bases=(_DecodingSection,),
    frozen=True,
)
_DecodingKeys.__module__ = __name__  # make_dataclass would say "types"


@dataclasses.dataclass(frozen=True)
class EvaluationConfig(_DecodingKeys):
    """`[evaluation]`: how the test split is translated and scored.

    The decoding keys (`method`, `beam_size`, `length_penalty`,
    `max_length`) are `DecodingOptions`, with its defaults; `compare` lists
    more methods to score alongside; `tokenized_reference` (relative to the
    data directory) adds tokenized BLEU; `samples` sentences of the valid
    split are translated into TensorBoard every epoch, and the first
    `attention_images` of them get cross-attention maps there (Images).

    After every epoch, `valid_sentences` pairs of the valid split (a seeded
    sample, the same in every epoch; all of them if there are fewer; 0
    turns this off) are translated with `valid_method` (the other decoding
    keys as above) and scored: validation BLEU and exact match in
    TensorBoard, which `[training] early_stopping_metric = "bleu"` can
    watch.
    """

    section = "evaluation"

    compare: tuple[str, ...] = ()
    batch_size: int = 64
    samples: int = 4
    attention_images: int = 2
    tokenized_reference: str | None = None
    valid_sentences: int = 1000
    valid_method: str = "greedy"

    def __post_init__(self):
        super().__post_init__()
        check_choice(
            "evaluation", "valid_method", self.valid_method, DETERMINISTIC_METHODS
        )
        check_range("evaluation", "valid_sentences", self.valid_sentences, 0)
        for method in self.compare:
            check_choice("evaluation", "compare", method, DETERMINISTIC_METHODS)
        check_range("evaluation", "batch_size", self.batch_size, 1)
        check_range("evaluation", "samples", self.samples, 0)
        check_range("evaluation", "attention_images", self.attention_images, 0)

    @property
    def valid_decoding(self):
        """`DecodingOptions` of the per-epoch validation scores."""
        return self.decoding.replace(method=self.valid_method)

    def methods(self):
        """`DecodingOptions` of the primary method, then of `compare`'s others."""
        others = [m for m in self.compare if m != self.method]
        return [self.decoding] + [
            dataclasses.replace(self.decoding, method=m) for m in dict.fromkeys(others)
        ]


@dataclasses.dataclass(frozen=True)
class ExportConfig(_DecodingKeys):
    """`[export]`: decoding inside the exported SavedModel (fixed at export).

    `DecodingOptions` with its defaults; `source_max_length`, the most
    source tokens read (default: the model's `max_length`); `dtype`, the
    graph's weights and arithmetic ("float32", or "bfloat16"); and
    `jit_compile`, XLA-compiled decoding (TF Serving then needs
    `--xla_cpu_compilation_enabled`).
    """

    section = "export"

    source_max_length: int | None = None
    dtype: str = "float32"
    jit_compile: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_range("export", "source_max_length", self.source_max_length, 1)
        check_choice("export", "dtype", self.dtype, EXPORT_DTYPES)
