"""The layout of a `keras-tfm train` run directory, and loading a finished run.

    RUN_DIR/
        config.json               the resolved config (`RunConfig.to_dict`)
        transformer_config.json   the model's `TransformerConfig`
        data/                     the generated task (numbers task only)
        tokenizers/{src,tgt}.model
        logs/                     TensorBoard (projector/: the embeddings)
        checkpoints/epoch_NNN.keras
        checkpoints/best.keras    the best epoch (`keep_best_checkpoint`)
        checkpoints/best.json     its epoch and validation value
        backup/                   BackupAndRestore (removed when fit ends)
        model.keras               the final (possibly averaged) model
        metrics.json              test scores, training time, epochs
        workers/N/                what worker N writes, unless it is the chief

Every file is written to a temporary name beside its place and renamed, so
a reader sees the old file or the new one, never half of one.
"""

import dataclasses
import json
import os
from pathlib import Path

from keras_tfm.errors import ConfigError, RunDirectoryError
from keras_tfm.files import write_atomic


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """What `RunDirectory.load` returns."""

    config: object  # RunConfig
    model: object  # keras.Model
    src_tokenizer: object  # Tokenizer
    tgt_tokenizer: object  # Tokenizer


@dataclasses.dataclass(frozen=True)
class RunDirectory:
    """Paths of one run directory (nothing is created until written)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    data = property(lambda self: self.path / "data")
    tokenizers = property(lambda self: self.path / "tokenizers")
    src_tokenizer = property(lambda self: self.tokenizers / "src.model")
    tgt_tokenizer = property(lambda self: self.tokenizers / "tgt.model")
    logs = property(lambda self: self.path / "logs")
    checkpoints = property(lambda self: self.path / "checkpoints")
    backup = property(lambda self: self.path / "backup")
    model = property(lambda self: self.path / "model.keras")
    config = property(lambda self: self.path / "config.json")
    transformer_config = property(lambda self: self.path / "transformer_config.json")
    metrics = property(lambda self: self.path / "metrics.json")

    best_checkpoint = property(lambda self: self.checkpoints / "best.keras")

    def checkpoint(self, epoch):
        """The checkpoint of epoch `epoch` (counted from 1)."""
        return self.checkpoints / f"epoch_{epoch:03d}.keras"

    def checkpoint_pattern(self):
        """`ModelCheckpoint`'s file pattern for `checkpoint`'s names."""
        return str(self.checkpoints / "epoch_{epoch:03d}.keras")

    def worker(self, index):
        """Where a worker that is not the chief writes: `workers/INDEX/`."""
        return RunDirectory(self.path / "workers" / str(index))

    def write_json(self, path, payload):
        text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
        write_atomic(path, text.encode("utf-8"))

    def save_model(self, model):
        """Saves `model` as `model.keras`, atomically."""
        temporary = self.path / ".model.tmp.keras"
        model.save(temporary)
        os.replace(temporary, self.model)

    def finished_files(self, model=None):
        """`[config, model, src tokenizer, tgt tokenizer]` of a finished run.

        `model` replaces `model.keras` (e.g. one epoch's checkpoint).

        Raises:
            RunDirectoryError: naming every missing file.
        """
        files = [
            self.config,
            Path(model) if model else self.model,
            self.src_tokenizer,
            self.tgt_tokenizer,
        ]
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise RunDirectoryError(
                f"{self.path} is not a finished training run: missing "
                f"{', '.join(missing)}"
            )
        return files

    def load_config(self, overrides=None):
        """The run's resolved `RunConfig` (from `config.json`)."""
        from keras_tfm.job.run_config import RunConfig

        try:
            raw = json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise RunDirectoryError(
                f"{self.config}: cannot read the run config ({error})"
            ) from None
        try:
            return RunConfig.from_dict(
                raw, source=str(self.config), overrides=overrides
            )
        except ConfigError as error:
            raise RunDirectoryError(str(error)) from None

    def load(self, model=None, overrides=None):
        """Loads a finished run: config, model and tokenizers.

        Args:
            model: a `.keras` file to load instead of `model.keras`.
            overrides: command-line values for the config, as
                `RunConfig.from_dict` takes them.
        """
        config_path, model_path, src_path, tgt_path = self.finished_files(model)
        config = self.load_config(overrides)

        import keras

        from keras_tfm.models.legacy import upgrade_model
        from keras_tfm.text.tokenizer import Tokenizer

        try:
            loaded = upgrade_model(keras.saving.load_model(model_path, compile=False))
            src_tokenizer = Tokenizer.load(src_path)
            tgt_tokenizer = Tokenizer.load(tgt_path)
            loaded.attach_tokenizers(src_tokenizer, tgt_tokenizer)
        except (OSError, ValueError, TypeError) as error:
            message = " ".join(str(error).split())
            raise RunDirectoryError(
                f"cannot load the run in {self.path}: {message}"
            ) from None
        return FinishedRun(config, loaded, src_tokenizer, tgt_tokenizer)
