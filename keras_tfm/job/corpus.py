"""The corpus of a `keras-tfm train` run: its parallel text and tokenizers.

`prepare_corpus` checks the training files in one streaming pass, reads the
valid and test splits into memory and learns the SentencePiece models (or
reloads the run's); `data_directory` finds the text, generating the
built-in numbers task once; `prepare_tokenizers` learns the models.
"""

import dataclasses
import time
from pathlib import Path

__all__ = ["Corpus", "data_directory", "prepare_corpus", "prepare_tokenizers"]


@dataclasses.dataclass
class Corpus:
    """The run's data: the training files (`([source files], [target
    files])`, streamed), the valid and test splits (`(sources, targets)`
    each, in memory) and the tokenizers."""

    data_dir: Path
    train: tuple
    train_pairs: int
    valid: tuple
    test: tuple
    src_tokenizer: object
    tgt_tokenizer: object
    tokenized_reference: list | None

    @property
    def tokenizers(self):
        return self.src_tokenizer, self.tgt_tokenizer


def prepare_corpus(run):
    """Checks the training files in one streaming pass, reads the valid and
    test splits, and learns (or reloads) the tokenizers."""
    from keras_tfm.data.text_files import (
        check_parallel_files,
        read_parallel,
        split_files,
    )
    from keras_tfm.job.evaluation import read_tokenized_reference

    config = run.config
    data_dir = data_directory(config, run.directory)
    src, tgt = config.data.src, config.data.tgt
    train = split_files(data_dir, "train", src, tgt)
    started = time.perf_counter()
    pairs = check_parallel_files(*train)
    run.log(
        f"training text: {pairs:,} sentence pairs in {len(train[0])} file pair(s), "
        f"checked in {time.perf_counter() - started:.1f} s"
    )
    valid, test = (
        read_parallel(data_dir, split, src, tgt) for split in ("valid", "test")
    )
    tokenized = read_tokenized_reference(config.evaluation, data_dir, len(test[1]))
    started = time.perf_counter()
    src_tok, tgt_tok = prepare_tokenizers(config.tokenizer, run.directory, *train)
    run.log(f"tokenizers ready in {time.perf_counter() - started:.1f} s")
    return Corpus(data_dir, train, pairs, valid, test, src_tok, tgt_tok, tokenized)


def data_directory(config, directory):
    """The folder of the parallel text; the numbers task is generated once."""
    from keras_tfm.data.numbers_task import write_numbers_task

    data = config.data
    if data.task == "files":
        return Path(data.data_dir).expanduser()
    if not (directory.data / f"test.{data.tgt}").exists():
        write_numbers_task(
            directory.data,
            max_number=data.max_number,
            valid_size=data.valid_size,
            test_size=data.test_size,
            seed=config.training.seed,
        )
    return directory.data


def prepare_tokenizers(settings, directory, src_files, tgt_files):
    """Trains the SentencePiece models once; later runs reuse the saved ones.

    The training files are streamed to SentencePiece, which keeps a seeded
    sample of `input_sentence_size` sentences. With `shared`, one model is
    learned from both sides (the paper's joint vocabulary, needed to share
    embeddings) and saved as both `src.model` and `tgt.model`.
    """
    from keras_tfm.data.text_files import iterate_lines
    from keras_tfm.text.tokenizer import Tokenizer, train_sentencepiece

    directory.tokenizers.mkdir(parents=True, exist_ok=True)
    paths = {"src": directory.src_tokenizer, "tgt": directory.tgt_tokenizer}
    files = {"src": list(src_files), "tgt": list(tgt_files)}
    if settings.shared:
        files = {side: files["src"] + files["tgt"] for side in paths}
    for side, path in paths.items():
        if path.exists():
            continue
        if settings.shared and paths["src"].exists():
            Tokenizer.load(paths["src"]).save(path)
            continue
        proto = train_sentencepiece(
            iterate_lines(files[side]),
            vocab_size=getattr(settings, f"{side}_vocab_size"),
            model_type=settings.model_type,
            input_sentence_size=settings.input_sentence_size,
        )
        Tokenizer(proto).save(path)
    return [Tokenizer.load(paths[side]) for side in ("src", "tgt")]
