"""The training job's sections that say what is trained, and how: `[data]`,
`[tokenizer]`, `[model]` and `[training]`, one frozen dataclass each.

Each class is one TOML section: its fields are the section's keys with their
defaults, and `__post_init__` checks every key's type and range, raising a
`FieldError` that names the section and key. The checks across sections,
and reading the file, are `RunConfig`'s (`keras_tfm.job.run_config`).
"""

import dataclasses

from keras_tfm.data.options import BatchingOptions
from keras_tfm.errors import FieldError
from keras_tfm.job.config_file import check_choice, check_range
from keras_tfm.models.transformer_config import PRESETS, TransformerConfig

__all__ = ["DataConfig", "ModelConfig", "TokenizerConfig", "TrainingConfig"]

# What `[training] early_stopping_metric` may watch: the epoch-log key
# (`keras_tfm.job.validation_scores` adds "val_bleu") and whether higher is
# better.
MONITORED = {"loss": ("val_loss", "min"), "bleu": ("val_bleu", "max")}


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
ModelConfig.__module__ = __name__  # make_dataclass would say "types"


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """`[training]`: `model.fit` settings.

    Batches hold `batch_size` sentences, or with `batch_tokens` sentences of
    similar length up to that many tokens per side (set one; the default is
    64 sentences). `time_limit_minutes` stops after the last whole epoch
    that fits; `average_checkpoints = N` evaluates the mean of the last N
    epochs' weights, or with `choose_average = true` the mean that scores
    the best validation BLEU among the last 1 to N epochs (and, when the
    best epoch by validation BLEU is earlier, the 1 to N epochs ending
    there; `keras_tfm.job.average_choice`). `verbose` is fit's (default: a
    progress bar on a terminal, a line per epoch otherwise).

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

    `early_stopping_metric` is what `early_stopping_patience` and
    `keep_best_checkpoint` watch: the validation "loss" or "bleu" (the
    per-epoch scores of `[evaluation] valid_sentences`). With
    `early_stopping_patience = P`, training stops after P epochs without a
    better value and goes back to the best epoch's weights;
    `keep_best_checkpoint = true` saves the best epoch as
    `checkpoints/best.keras` and makes it the run's model (test scores,
    `model.keras`, export) instead of the last epoch's.

    `profile_steps = [FIRST, LAST]` traces training batches FIRST to LAST
    (counted from 1 in each `fit` call, so again after a resume; one
    optimizer step each unless
    `accumulate_steps`) with TensorFlow's profiler into `logs/train/
    plugins/profile`, for TensorBoard's Profile dashboard (`pip install
    "keras-tfm[profile]"`). Off (`[]`) by default: tracing slows the traced
    steps.
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
    early_stopping_metric: str = "loss"
    keep_best_checkpoint: bool = False
    seed: int = 0
    time_limit_minutes: float | None = None
    average_checkpoints: int = 1
    choose_average: bool = False
    profile_steps: tuple[int, ...] = ()
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
        check_choice(
            "training",
            "early_stopping_metric",
            self.early_stopping_metric,
            tuple(MONITORED),
        )
        steps = self.profile_steps
        if steps and (len(steps) != 2 or not 1 <= steps[0] <= steps[1]):
            raise FieldError(
                "training",
                "profile_steps",
                f"must be [FIRST, LAST] with 1 <= FIRST <= LAST, got {list(steps)}",
            )
        if self.keep_best_checkpoint and self.average_checkpoints > 1:
            raise FieldError(
                "training",
                "keep_best_checkpoint",
                f"= true and average_checkpoints = {self.average_checkpoints} "
                "both choose the run's final weights; set one",
            )
        metric = self.early_stopping_metric
        if metric != "loss" and not (
            self.early_stopping_patience or self.keep_best_checkpoint
        ):
            raise FieldError(
                "training",
                "early_stopping_metric",
                f'= "{metric}" has no effect: nothing watches it without '
                "early_stopping_patience or keep_best_checkpoint",
            )
        if self.choose_average and self.average_checkpoints < 2:
            raise FieldError(
                "training",
                "choose_average",
                "= true needs average_checkpoints of 2 or more (the most "
                "epochs averaged)",
            )

    @property
    def setting_needing_validation_bleu(self):
        """The setting that goes by validation BLEU (which then has to be
        computed), as `(field, value)` spelled as in a config file, or None."""
        if self.early_stopping_metric == "bleu" and (
            self.early_stopping_patience or self.keep_best_checkpoint
        ):
            return "early_stopping_metric", '"bleu"'
        if self.choose_average:
            return "choose_average", "true"
        return None
