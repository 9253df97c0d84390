"""The training job's configuration: one frozen dataclass per TOML section.

A config file has a top-level `name` and the sections `[data]`,
`[tokenizer]`, `[model]`, `[training]`, `[evaluation]` and `[export]`, each
optional. `load_run_config` reads it once: every key is checked for its
type and range, unknown sections and keys are rejected with the closest
valid name, and the checks that span sections (decoding lengths against the
model's, shared embeddings against the vocabulary, ...) run before any data
is read or model built. Unset keys take the defaults below; `to_toml` writes
the resolved config, and a run's `config.json` holds the same values.

Every error is a `ConfigError` whose one-line message names the file, the
line when it can be found, the section and the key.
"""

import dataclasses
from importlib import resources

from keras_tfm.data.options import BatchingOptions
from keras_tfm.decoding.options import DETERMINISTIC_METHODS, DecodingOptions
from keras_tfm.errors import ConfigError, FieldError
from keras_tfm.export.options import EXPORT_DTYPES
from keras_tfm.job.config_file import (
    build_config,
    check_choice,
    check_range,
    read_toml,
    toml_value,
)
from keras_tfm.models.transformer_config import PRESETS, TransformerConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "ExportConfig",
    "ModelConfig",
    "RunConfig",
    "SECTIONS",
    "TokenizerConfig",
    "TrainingConfig",
    "load_run_config",
]

DEFAULT_CONFIG = "numbers"


# ------------------------------------------------------------------ sections
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """`[data]`: where the parallel text comes from.

    `task = "numbers"` generates the built-in German->English numbers task
    into the run directory (`max_number`, `valid_size`, `test_size`);
    `task = "files"` reads `{train,valid,test}.{src,tgt}` from `data_dir`
    (setting `data_dir`, or `--data-dir`, implies it); the training text may
    be shards `train.NAME.{src,tgt}`. It is streamed, never loaded whole:
    `shuffle_buffer` pairs are shuffled at a time.
    """

    task: str = "numbers"
    data_dir: str | None = None
    src: str = "de"
    tgt: str = "en"
    max_number: int = 9999
    valid_size: int = 500
    test_size: int = 500
    shuffle_buffer: int = 100_000

    def __post_init__(self):
        if self.data_dir is not None:
            object.__setattr__(self, "task", "files")
        check_choice("data", "task", self.task, ("numbers", "files"))
        if self.task == "files" and not self.data_dir:
            raise FieldError(
                "data",
                "task",
                "= 'files' needs data_dir: set it or pass --data-dir DIR",
            )
        for name in ("src", "tgt"):
            value = getattr(self, name)
            if not value or "/" in value or value.startswith("."):
                raise FieldError("data", name, f"must be a file suffix, got {value!r}")
        for name in ("max_number", "valid_size", "test_size"):
            check_range("data", name, getattr(self, name), 0)
        check_range("data", "shuffle_buffer", self.shuffle_buffer, 1)
        if (
            self.task == "numbers"
            and self.valid_size + self.test_size > self.max_number
        ):
            raise FieldError(
                "data",
                "max_number",
                f"({self.max_number}) leaves no training numbers after "
                f"valid_size + test_size = {self.valid_size + self.test_size}",
            )


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """`[tokenizer]`: the SentencePiece models learned from the training text.

    `shared = true` learns one joint model of `src_vocab_size` pieces for
    both languages (needed by `[model] share_embeddings`). `tgt_vocab_size`
    defaults to `src_vocab_size`. The models are learned from a seeded
    sample of at most `input_sentence_size` training sentences (per model),
    so that their cost does not grow with the corpus.

    `sampling_alpha` > 0 turns on subword regularisation for the training
    text: each pass over it draws a fresh segmentation of every sentence
    (BPE-dropout with merge-skip probability `sampling_alpha` for BPE models,
    sampling with smoothing `sampling_alpha` among the `sampling_nbest_size`
    best segmentations for unigram ones, -1 meaning all). Validation,
    evaluation and the exported model always use the one best segmentation.
    `sampling_alpha` is kept below 1 (for BPE, 1 would skip every merge);
    pairs that sampling makes longer than `[model] max_length` are left out
    of that pass.
    """

    model_type: str = "bpe"
    shared: bool = False
    src_vocab_size: int = 8000
    tgt_vocab_size: int | None = None
    input_sentence_size: int = 2_000_000
    sampling_alpha: float = BatchingOptions.sampling_alpha
    sampling_nbest_size: int = BatchingOptions.sampling_nbest_size

    def __post_init__(self):
        check_choice("tokenizer", "model_type", self.model_type, ("bpe", "unigram"))
        if self.tgt_vocab_size is None:
            object.__setattr__(self, "tgt_vocab_size", self.src_vocab_size)
        for name in ("src_vocab_size", "tgt_vocab_size"):
            # Four ids are reserved: padding, unknown, start and end.
            check_range("tokenizer", name, getattr(self, name), 5)
        check_range("tokenizer", "input_sentence_size", self.input_sentence_size, 1)
        try:  # BatchingOptions' own checks, with a placeholder batch size
            BatchingOptions(
                batch_size=1,
                sampling_alpha=self.sampling_alpha,
                sampling_nbest_size=self.sampling_nbest_size,
            )
        except FieldError as error:
            raise FieldError("tokenizer", error.field, error.problem) from None
        if self.shared and self.tgt_vocab_size != self.src_vocab_size:
            raise FieldError(
                "tokenizer",
                "tgt_vocab_size",
                f"({self.tgt_vocab_size}) differs from src_vocab_size "
                f"({self.src_vocab_size}), but shared = true learns one vocabulary",
            )


_MODEL_FIELDS = [
    f
    for f in dataclasses.fields(TransformerConfig)
    if f.name not in ("src_vocab_size", "tgt_vocab_size")
]


def _model_section():
    """`ModelConfig`: `preset` plus every `TransformerConfig` field but the
    vocabulary sizes (which come from the tokenizers)."""
    fields = [("preset", str | None, None)] + [
        (f.name, f.type | None, None) for f in _MODEL_FIELDS
    ]

    def post_init(self):
        if self.preset is not None and self.preset not in PRESETS:
            raise FieldError(
                "model",
                "preset",
                f"is unknown: {self.preset!r}; choose from {sorted(PRESETS)}",
            )
        preset = PRESETS.get(self.preset, {})
        for f in _MODEL_FIELDS:
            if getattr(self, f.name) is None:
                object.__setattr__(self, f.name, preset.get(f.name, f.default))
        try:  # TransformerConfig's own checks, with placeholder vocabularies
            self.transformer_config(8, 8)
        except FieldError as error:
            raise FieldError("model", error.field, error.problem) from None

    def transformer_config(self, src_vocab_size, tgt_vocab_size):
        values = {f.name: getattr(self, f.name) for f in _MODEL_FIELDS}
        return TransformerConfig(
            src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, **values
        )

    return dataclasses.make_dataclass(
        "ModelConfig",
        fields,
        frozen=True,
        namespace={
            "__post_init__": post_init,
            "transformer_config": transformer_config,
            "__doc__": "`[model]`: a preset (tiny, base, big) and any "
            "`TransformerConfig` field; unset fields take the preset's value.",
        },
    )


ModelConfig = _model_section()


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """`[training]`: `model.fit` settings.

    Batches hold `batch_size` sentences, or with `batch_tokens` sentences of
    similar length up to that many tokens per side (set one; the default is
    64 sentences). `time_limit_minutes` stops after the last whole epoch
    that fits; `average_checkpoints = N` evaluates the mean of the last N
    epochs' weights. `verbose` is fit's (default: a progress bar on a
    terminal, a line per epoch otherwise).

    `steps_per_epoch` makes an epoch that many batches (the training data
    repeats), so that checkpoints, validation and TensorBoard come at a
    fixed rhythm on corpora of any size. `max_steps` ends training after
    that many optimizer steps, whatever `epochs` says, then evaluates, saves
    and exports as usual.

    `accumulate_steps = N` makes N batches (of `batch_size` sentences or
    `batch_tokens` tokens each) one optimizer step, exactly the step of one
    batch holding all their tokens; steps count optimizer steps.
    `log_every_steps = K` writes loss, learning rate, tokens/s and gradient
    norm to TensorBoard every K optimizer steps (0: per epoch only).

    `cooldown_steps = C` takes the learning rate linearly to zero over the
    run's last C optimizer steps (`TransformerSchedule`). The run's length
    is `max_steps`, or `epochs` times `steps_per_epoch`, or `epochs` times
    the batches of one pass over the training data, counted before `fit`
    (with subword sampling, other passes can differ by a few batches).
    A cooldown longer than the run (`--max-steps 20` for a smoke test, say)
    covers the whole run. A run stopped early (time limit, early stopping)
    ends before its cooldown does.
    """

    epochs: int = 10
    steps_per_epoch: int | None = None
    max_steps: int | None = None
    accumulate_steps: int = 1
    log_every_steps: int = 50
    batch_size: int | None = None
    batch_tokens: int | None = None
    warmup_steps: int = 4000
    learning_rate_scale: float = 1.0
    cooldown_steps: int = 0
    label_smoothing: float = 0.1
    mixed_precision: bool = False
    jit_compile: bool = False
    early_stopping_patience: int = 0
    seed: int = 0
    time_limit_minutes: float | None = None
    average_checkpoints: int = 1
    verbose: int | None = None

    def __post_init__(self):
        if self.batch_size is not None and self.batch_tokens is not None:
            raise FieldError(
                "training", "batch_tokens", "and batch_size are both set; set one"
            )
        if self.batch_tokens is None and self.batch_size is None:
            object.__setattr__(self, "batch_size", 64)
        for name in (
            "epochs",
            "batch_size",
            "batch_tokens",
            "warmup_steps",
            "steps_per_epoch",
            "max_steps",
            "accumulate_steps",
        ):
            check_range("training", name, getattr(self, name), 1)
        for name in (
            "early_stopping_patience",
            "seed",
            "log_every_steps",
            "cooldown_steps",
        ):
            check_range("training", name, getattr(self, name), 0)
        check_range("training", "average_checkpoints", self.average_checkpoints, 1)
        check_range(
            "training",
            "learning_rate_scale",
            self.learning_rate_scale,
            0,
            low_open=True,
        )
        check_range(
            "training", "time_limit_minutes", self.time_limit_minutes, 0, low_open=True
        )
        check_range("training", "label_smoothing", self.label_smoothing, 0, 1)
        if self.verbose is not None:
            check_choice("training", "verbose", self.verbose, (0, 1, 2))


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


@dataclasses.dataclass(frozen=True)
class EvaluationConfig(_DecodingKeys):
    """`[evaluation]`: how the test split is translated and scored.

    The decoding keys (`method`, `beam_size`, `length_penalty`,
    `max_length`) are `DecodingOptions`, with its defaults; `compare` lists
    more methods to score alongside; `tokenized_reference` (relative to the
    data directory) adds tokenized BLEU; `samples` sentences of the valid
    split are translated into TensorBoard every epoch, and the first
    `attention_images` of them get cross-attention maps there (Images).
    """

    section = "evaluation"

    compare: tuple[str, ...] = ()
    batch_size: int = 64
    samples: int = 4
    attention_images: int = 2
    tokenized_reference: str | None = None

    def __post_init__(self):
        super().__post_init__()
        for method in self.compare:
            check_choice("evaluation", "compare", method, DETERMINISTIC_METHODS)
        check_range("evaluation", "batch_size", self.batch_size, 1)
        check_range("evaluation", "samples", self.samples, 0)
        check_range("evaluation", "attention_images", self.attention_images, 0)

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


SECTIONS = {
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "evaluation": EvaluationConfig,
    "export": ExportConfig,
}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A whole training job: its `name` and one config per section.

    Construct it with `load_run_config` or `RunConfig.from_dict`, which check
    types and names; the constructor runs the checks across sections and
    fills in the decoding lengths from the model's `max_length`.
    """

    name: str = "run"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    # Where the config came from, for error messages; not part of the config.
    source: str = dataclasses.field(default="<config>", compare=False, repr=False)

    def __post_init__(self):
        # The name becomes a folder: runs/NAME and the SavedModel's NAME.
        name = self.name
        if (
            not isinstance(name, str)
            or not name
            or name.startswith(".")
            or ("/" in name or "\\" in name or "\0" in name)
        ):
            raise FieldError(None, "name", f"must be a plain folder name, got {name!r}")
        limit = self.model.max_length
        for section, key in (
            ("evaluation", "max_length"),
            ("export", "max_length"),
            ("export", "source_max_length"),
        ):
            values = getattr(self, section)
            value = getattr(values, key)
            if value is None:
                value = limit
                object.__setattr__(
                    self, section, dataclasses.replace(values, **{key: value})
                )
            if value > limit:
                raise FieldError(
                    section, key, f"is {value}, more than [model] max_length {limit}"
                )
        if self.model.share_embeddings and not self.tokenizer.shared:
            raise FieldError(
                "model",
                "share_embeddings",
                "= true needs one vocabulary for both languages: set "
                "[tokenizer] shared = true",
            )
        batch_tokens = self.training.batch_tokens
        if batch_tokens is not None and batch_tokens < limit:
            raise FieldError(
                "training",
                "batch_tokens",
                f"is {batch_tokens}, less than [model] max_length {limit}: the "
                "longest sentences would fit in no batch",
            )

    @classmethod
    def from_dict(cls, raw, source="<config>", text=None, overrides=None):
        """Builds a checked config from a TOML or JSON mapping.

        Args:
            raw: `{"name": ..., "data": {...}, ...}`.
            source: the file name for error messages.
            text: the file's text, to find the line of a bad key.
            overrides: `{"section.key": (flag, value)}` from the command
                line; they replace the file's values (None values are
                skipped) and errors in them name the flag.

        Raises:
            ConfigError: one line naming the file, line, section and key.
        """
        return build_config(cls, SECTIONS, raw, source, text, overrides)

    def updated(self, values):
        """A copy with `{"section.key": value}` replaced, checked again."""
        overrides = {key: (key, value) for key, value in values.items()}
        return type(self).from_dict(self.to_dict(), self.source, overrides=overrides)

    def to_dict(self):
        """The resolved config as plain values (what `config.json` holds)."""
        result = {"name": self.name}
        for section in SECTIONS:
            values = dataclasses.asdict(getattr(self, section))
            result[section] = {
                k: list(v) if isinstance(v, tuple) else v for k, v in values.items()
            }
        return result

    def to_toml(self):
        """The resolved config as TOML; unset keys appear as comments."""
        lines = [f"name = {toml_value(self.name)}"]
        for section, values in self.to_dict().items():
            if section == "name":
                continue
            lines += ["", f"[{section}]"]
            for key, value in values.items():
                if value is None:
                    lines.append(f"# {key} is not set")
                else:
                    lines.append(f"{key} = {toml_value(value)}")
        return "\n".join(lines) + "\n"


def load_run_config(path=None, overrides=None):
    """Reads and checks a TOML training config; None: the built-in default task.

    `overrides` are command-line values, as `RunConfig.from_dict` takes them.

    Raises:
        ConfigError: one line naming the file, line, section and key.
    """
    default = resources.files("keras_tfm").joinpath("configs", f"{DEFAULT_CONFIG}.toml")
    raw, text, source = read_toml(
        path, default.read_text(encoding="utf-8"), f"<built-in {DEFAULT_CONFIG}.toml>"
    )
    return RunConfig.from_dict(raw, source=source, text=text, overrides=overrides)
