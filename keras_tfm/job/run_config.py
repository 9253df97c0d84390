"""The training job's configuration: a name and one frozen dataclass per
TOML section.

A config file has a top-level `name` and the sections `[data]`,
`[tokenizer]`, `[model]`, `[training]`, `[evaluation]` and `[export]`, each
optional. The sections are defined in `keras_tfm.job.training_sections`
(data, tokenizer, model, training) and `keras_tfm.job.decoding_sections`
(evaluation, export), where each key is checked for its type and range;
they are importable from here too.

`load_run_config` reads a file once: unknown sections and keys are rejected
with the closest valid name, and `RunConfig` runs the checks that span
sections (decoding lengths against the model's, shared embeddings against
the vocabulary, ...) before any data is read or model built. Unset keys
take the sections' defaults; `to_toml` writes the resolved config, and a
run's `config.json` holds the same values.

Every error is a `ConfigError` whose one-line message names the file, the
line when it can be found, the section and the key.
"""

import dataclasses
from importlib import resources

from keras_tfm.errors import ConfigError, FieldError
from keras_tfm.job.config_file import build_config, read_toml, toml_value
from keras_tfm.job.decoding_sections import EvaluationConfig, ExportConfig
from keras_tfm.job.training_sections import (
    DataConfig,
    ModelConfig,
    TokenizerConfig,
    TrainingConfig,
)

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
        setting = self.training.setting_needing_validation_bleu
        if setting and not self.evaluation.valid_sentences:
            field, value = setting
            raise FieldError(
                "training",
                field,
                f"= {value} needs validation BLEU: [evaluation] valid_sentences is 0",
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
