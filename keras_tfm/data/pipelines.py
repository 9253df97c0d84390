"""Parallel text: reading line-aligned files and building `tf.data` pipelines."""

import math
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from keras_tfm.constants import PADDING_ID
from keras_tfm.errors import DataError
from keras_tfm.text.tokenizer import Tokenizer

# Sentences are tokenized this many at a time inside the pipeline.
_TOKENIZE_BATCH = 512


def read_lines(path) -> list[str]:
    """Reads a UTF-8 file, one sentence per line, trailing whitespace removed.

    Raises:
        DataError: when the file is missing, empty or not valid UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path}: file is empty")
    # Split on "\n" only: str.splitlines would also split on characters such
    # as U+2028 or U+0085 and put the two sides out of step.
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()
    if raw_lines and raw_lines[0].startswith(b"\xef\xbb\xbf"):
        raw_lines[0] = raw_lines[0][3:]
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            column = len(raw[: error.start].decode("utf-8")) + 1
            raise DataError(
                f"{path}, line {number}: not valid UTF-8"
                f" (byte 0x{raw[error.start]:02x} at column {column})"
            ) from None
        lines.append(line.rstrip())
    return lines


def read_parallel(
    data_dir, split: str, src: str, tgt: str
) -> tuple[list[str], list[str]]:
    """Reads `{data_dir}/{split}.{src}` and `{data_dir}/{split}.{tgt}`.

    Returns:
        `(sources, targets)`, two lists of equal length.

    Raises:
        DataError: for a missing or empty file, a line that is not UTF-8, or
            files with different line counts.
    """
    data_dir = Path(data_dir)
    src_path = data_dir / f"{split}.{src}"
    tgt_path = data_dir / f"{split}.{tgt}"
    for path in (src_path, tgt_path):
        if not path.is_file():
            raise DataError(f"missing file: {path}")
    sources = read_lines(src_path)
    targets = read_lines(tgt_path)
    if len(sources) != len(targets):
        raise DataError(
            f"{src_path} has {len(sources)} lines but {tgt_path} has"
            f" {len(targets)} lines"
        )
    return sources, targets


def bucket_boundaries(
    max_length: int, min_length: int = 8, step: float = 1.1
) -> list[int]:
    """Exclusive upper bounds of length buckets covering `1..max_length`.

    Bucket widths grow geometrically by `step`, starting at `min_length`; the
    last boundary is `max_length + 1`, so every length up to `max_length`
    falls below some boundary.
    """
    boundaries = []
    length = min_length
    while length < max_length:
        boundaries.append(length + 1)
        length = max(length + 1, int(math.ceil(length * step)))
    boundaries.append(max_length + 1)
    return boundaries


def make_dataset(
    sources: Sequence[str],
    targets: Sequence[str],
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    *,
    batch_size: int | None = None,
    batch_tokens: int | None = None,
    max_length: int = 128,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int | None = None,
    sampling_alpha: float = 0.0,
    sampling_nbest_size: int = -1,
    cache: bool = False,
) -> tf.data.Dataset:
    """Builds a training or evaluation pipeline for sentence pairs.

    With source ids `x` and target ids `y` (as `tokenize` returns them), each
    example becomes

        source = x + [end]       (the encoder sees where the sentence ends)
        target = [start] + y     (decoder input)
        labels = y + [end]       (decoder input shifted left by one)

    Pairs whose source or labels are longer than `max_length` are dropped.
    Batches are padded with 0 at the end of each row.

    Args:
        sources, targets: aligned sentences.
        src_tokenizer, tgt_tokenizer: used inside the pipeline.
        batch_size: sentences per batch. Exactly one of `batch_size` and
            `batch_tokens` must be given.
        batch_tokens: group sentences of similar length so that each padded
            batch holds at most this many tokens per side (batch size times
            padded length, for source and for target alike). Must be at
            least `max_length`.
        max_length: longest source or target kept, in tokens, the added
            start/end token included.
        shuffle: shuffle pairs before batching, reshuffling every epoch. For
            a given `seed` the sequence of batches (over all epochs) is the
            same on every run (unless `sampling_alpha` draws segmentations).
        seed: shuffle seed.
        repeat: repeat forever (reshuffled each time when `shuffle`).
        drop_remainder: drop incomplete batches.
        shuffle_buffer: shuffle buffer size; default: the whole dataset.
        sampling_alpha, sampling_nbest_size: when `sampling_alpha` > 0,
            each pass draws a new subword segmentation of every sentence
            (`Tokenizer.sampler`; BPE-dropout for BPE models), a regulariser
            for training data.
        cache: keep the token ids of the first pass in memory and read
            later passes from there (shuffling and batching still run each
            pass). Not with `sampling_alpha` > 0.

    Returns:
        A dataset of `({"source": (B, S), "target": (B, T)}, labels (B, T))`,
        all int32.

    Raises:
        ValueError: on inconsistent arguments.
    """
    if len(sources) != len(targets):
        raise ValueError(f"got {len(sources)} sources but {len(targets)} targets")
    text = tf.data.Dataset.from_tensor_slices(
        (
            tf.constant(list(sources), dtype=tf.string),
            tf.constant(list(targets), dtype=tf.string),
        )
    )
    return _batched_pairs(
        text,
        src_tokenizer,
        tgt_tokenizer,
        batch_size=batch_size,
        batch_tokens=batch_tokens,
        max_length=max_length,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer or max(1, len(sources)),
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        sampling_alpha=sampling_alpha,
        sampling_nbest_size=sampling_nbest_size,
        cache=cache,
    )


def _check_batching(batch_size, batch_tokens, max_length):
    if (batch_size is None) == (batch_tokens is None):
        raise ValueError("give exactly one of batch_size and batch_tokens")
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_tokens is not None and batch_tokens < max_length:
        raise ValueError(
            f"batch_tokens ({batch_tokens}) must be >= max_length ({max_length})"
        )


def _batched_pairs(
    text,
    src_tokenizer,
    tgt_tokenizer,
    *,
    batch_size,
    batch_tokens,
    max_length,
    shuffle,
    shuffle_buffer,
    seed,
    repeat,
    drop_remainder,
    clean=False,
    sampling_alpha=0.0,
    sampling_nbest_size=-1,
    cache=False,
):
    """Sentence pairs `text` tokenized, filtered, shuffled and batched."""
    _check_batching(batch_size, batch_tokens, max_length)
    if cache and sampling_alpha:
        raise ValueError(
            "cache=True would keep the first pass's sampled segmentations; "
            "it cannot be combined with sampling_alpha > 0"
        )
    if sampling_alpha:
        src_tokenize = src_tokenizer.sampler(sampling_alpha, sampling_nbest_size)
        tgt_tokenize = tgt_tokenizer.sampler(sampling_alpha, sampling_nbest_size)
    else:
        src_tokenize, tgt_tokenize = src_tokenizer.tokenize, tgt_tokenizer.tokenize
    src_end = src_tokenizer.end_id
    tgt_start = tgt_tokenizer.start_id
    tgt_end = tgt_tokenizer.end_id

    def tokenize(src_text, tgt_text):
        if clean:  # lines straight from files, as `read_lines` cleans them
            src_text, tgt_text = _clean_lines(src_text), _clean_lines(tgt_text)
        return src_tokenize(src_text), tgt_tokenize(tgt_text)

    def add_special_ids(x, y):
        source = tf.concat([x, [src_end]], axis=0)
        target = tf.concat([[tgt_start], y], axis=0)
        labels = tf.concat([y, [tgt_end]], axis=0)
        return {"source": source, "target": target}, labels

    def short_enough(inputs, labels):
        return tf.logical_and(
            tf.size(inputs["source"]) <= max_length,
            tf.size(labels) <= max_length,
        )

    dataset = (
        text.batch(_TOKENIZE_BATCH)
        .map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .unbatch()
        .map(add_special_ids, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .filter(short_enough)
    )
    if cache:
        # Later passes read the ids from memory instead of tokenizing again,
        # which also frees the CPU the tokenizer took from the training steps.
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        dataset = dataset.repeat()

    padded_shapes = ({"source": [None], "target": [None]}, [None])
    padding_values = ({"source": PADDING_ID, "target": PADDING_ID}, PADDING_ID)
    if batch_size is not None:
        dataset = dataset.padded_batch(
            batch_size,
            padded_shapes=padded_shapes,
            padding_values=padding_values,
            drop_remainder=drop_remainder,
        )
    else:
        boundaries = bucket_boundaries(max_length)
        # Bucket i holds lengths below boundaries[i], so at most
        # boundaries[i] - 1 tokens per row after padding. The bucket past the
        # last boundary stays empty (longer pairs were filtered out).
        sizes = [max(1, batch_tokens // (bound - 1)) for bound in boundaries]
        sizes.append(1)
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda inputs, labels: tf.maximum(
                tf.size(inputs["source"]), tf.size(labels)
            ),
            bucket_boundaries=boundaries,
            bucket_batch_sizes=sizes,
            padded_shapes=padded_shapes,
            padding_values=padding_values,
            drop_remainder=drop_remainder,
        )
    # No autotuning thread: destroying an iterator (Keras does so at each
    # epoch and each validation pass) joins that thread, and TensorFlow 2.21
    # can leave it asleep until its next tuning round, up to a minute later.
    # Without it, AUTOTUNE parallelism keeps its starting value, the
    # thread pool's size (at most 16).
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def text_dataset(
    data_dir,
    split: str,
    src: str,
    tgt: str,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    **kwargs,
) -> tf.data.Dataset:
    """`read_parallel` followed by `make_dataset` (which takes `kwargs`)."""
    sources, targets = read_parallel(data_dir, split, src, tgt)
    return make_dataset(sources, targets, src_tokenizer, tgt_tokenizer, **kwargs)


# ------------------------------------------------------------ streaming text
_CHUNK_BYTES = 1 << 23
_BOM = b"\xef\xbb\xbf"


def split_files(data_dir, split: str, src: str, tgt: str):
    """The aligned files of a split: `([source files], [target files])`.

    Either one pair, `{split}.{src}` and `{split}.{tgt}`, or shards
    `{split}.NAME.{src}` with `{split}.NAME.{tgt}` beside each, in name order.

    Raises:
        DataError: when no source file exists or a shard has no partner.
    """
    data_dir = Path(data_dir)
    single = data_dir / f"{split}.{src}"
    if single.is_file():
        pairs = [(single, data_dir / f"{split}.{tgt}")]
    else:
        shards = sorted(data_dir.glob(f"{split}.*.{src}"))
        if not shards:
            raise DataError(f"missing file: {single} (nor shards {split}.*.{src})")
        suffix = len(src) + 1
        pairs = [(path, Path(str(path)[:-suffix] + f".{tgt}")) for path in shards]
    for _, tgt_path in pairs:
        if not tgt_path.is_file():
            raise DataError(f"missing file: {tgt_path}")
    return [a for a, _ in pairs], [b for _, b in pairs]


def count_lines(path) -> int:
    """Lines of a UTF-8 text file, read in one streaming pass.

    Raises:
        DataError: when the file is missing, empty or not valid UTF-8 (naming
            the line and column, as `read_lines` does).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    lines, carry, head = 0, b"", True
    with open(path, "rb") as file:
        while True:
            chunk = file.read(_CHUNK_BYTES)
            end = not chunk
            data = carry + chunk
            if head:  # a byte-order mark may open the file
                if len(data) < len(_BOM) and not end:
                    carry = data
                    continue
                data, head = data.removeprefix(_BOM), False
            # Whole lines only (all that is left at the end of the file).
            cut = len(data) if end else data.rfind(b"\n") + 1
            whole, carry = data[:cut], data[cut:]
            try:
                whole.decode("utf-8")
            except UnicodeDecodeError as error:
                start = whole.rfind(b"\n", 0, error.start) + 1
                column = len(whole[start : error.start].decode("utf-8")) + 1
                number = lines + whole.count(b"\n", 0, error.start) + 1
                raise DataError(
                    f"{path}, line {number}: not valid UTF-8"
                    f" (byte 0x{whole[error.start]:02x} at column {column})"
                ) from None
            lines += whole.count(b"\n")
            if end:
                return lines + (1 if whole and not whole.endswith(b"\n") else 0)


def check_parallel_files(src_files, tgt_files) -> int:
    """Checks aligned files in one streaming pass; returns the pair count.

    Raises:
        DataError: for a missing, empty or non-UTF-8 file, or two aligned
            files with different line counts.
    """
    total = 0
    for src_path, tgt_path in zip(src_files, tgt_files, strict=True):
        src_lines, tgt_lines = count_lines(src_path), count_lines(tgt_path)
        if src_lines != tgt_lines:
            raise DataError(
                f"{src_path} has {src_lines} lines but {tgt_path} has {tgt_lines} lines"
            )
        total += src_lines
    return total


def iterate_lines(paths):
    """The lines of `paths` in order, as `read_lines` cleans them (a stream)."""
    for path in paths:
        with open(path, encoding="utf-8-sig", newline="\n") as file:
            for line in file:
                yield line.rstrip()


def _clean_lines(lines):
    # `read_lines`' cleaning, in the graph: no byte-order mark, no trailing
    # whitespace (TextLineDataset drops only the "\n").
    lines = tf.strings.regex_replace(lines, "^\ufeff", "")
    return tf.strings.regex_replace(lines, r"\s+$", "")


def stream_dataset(
    src_files: Sequence,
    tgt_files: Sequence,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    *,
    batch_size: int | None = None,
    batch_tokens: int | None = None,
    max_length: int = 128,
    shuffle: bool = False,
    shuffle_buffer: int = 100_000,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    sampling_alpha: float = 0.0,
    sampling_nbest_size: int = -1,
    cache: bool = False,
) -> tf.data.Dataset:
    """`make_dataset`'s batches, read from aligned files line by line.

    Nothing is loaded whole: lines are read with `TextLineDataset`, tokenized
    on the fly and shuffled in a buffer of `shuffle_buffer` pairs, so memory
    does not grow with the corpus. With `shuffle`, the file order is
    shuffled too (seeded, anew each pass) and up to four files are read
    interleaved. Check the files first with `check_parallel_files`.

    Args:
        src_files, tgt_files: aligned files, as `split_files` returns them.
        num_shards, shard_index: this reader's share, for several workers:
            whole files (file i goes to shard i mod num_shards) when there
            are at least as many files as shards, else every num_shards-th
            pair. Shards are disjoint and together hold every pair.
        cache: keep the token ids of the first pass in memory, for a corpus
            that fits (as when the shuffle buffer holds all of it anyway).
            Later passes then see the pairs in the first pass's file order
            before the pair-level shuffle.
        Others: as `make_dataset`.
    """
    if len(src_files) != len(tgt_files) or not src_files:
        raise ValueError(
            f"need aligned files, got {len(src_files)} sources and "
            f"{len(tgt_files)} targets"
        )
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} outside [0, {num_shards})")
    files = tf.data.Dataset.from_tensor_slices(
        ([str(f) for f in src_files], [str(f) for f in tgt_files])
    )
    by_file = num_shards > 1 and len(src_files) >= num_shards
    if by_file:
        files = files.shard(num_shards, shard_index)
    count = len(src_files)
    if by_file:
        count = -(-(count - shard_index) // num_shards)
    if shuffle:
        files = files.shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)

    def pairs(src_path, tgt_path):
        return tf.data.Dataset.zip(
            (tf.data.TextLineDataset(src_path), tf.data.TextLineDataset(tgt_path))
        )

    text = files.interleave(
        pairs,
        cycle_length=min(4, max(count, 1)) if shuffle else 1,
        block_length=16,
    )
    if num_shards > 1 and not by_file:
        text = text.shard(num_shards, shard_index)
    return _batched_pairs(
        text,
        src_tokenizer,
        tgt_tokenizer,
        batch_size=batch_size,
        batch_tokens=batch_tokens,
        max_length=max_length,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        clean=True,
        sampling_alpha=sampling_alpha,
        sampling_nbest_size=sampling_nbest_size,
        cache=cache,
    )
