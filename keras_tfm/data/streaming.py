"""Batches of sentence pairs read from aligned files line by line.

Nothing is loaded whole: `stream_dataset` reads lines with
`TextLineDataset`, cleans them as `read_lines` does, and hands them to the
batching core of `keras_tfm.data.batching`, so memory does not grow with
the corpus. Check the files first with `check_parallel_files`.
"""

from collections.abc import Sequence

import tensorflow as tf

from keras_tfm.data.batching import batch_pairs
from keras_tfm.data.options import BatchingOptions
from keras_tfm.text.tokenizer import Tokenizer


def stream_dataset(
    src_files: Sequence,
    tgt_files: Sequence,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    options: BatchingOptions,
    *,
    num_shards: int = 1,
    shard_index: int = 0,
) -> tf.data.Dataset:
    """`make_dataset`'s batches, read from aligned files line by line.

    Lines are tokenized on the fly and shuffled in a buffer of
    `options.shuffle_buffer` pairs (which must be set to shuffle). With
    `options.shuffle`, the file order is shuffled too (seeded, anew each
    pass) and up to four files are read interleaved. With `options.cache`
    (for a corpus that fits, as when the shuffle buffer holds all of it
    anyway) later passes see the pairs in the first pass's file order before
    the pair-level shuffle.

    Args:
        src_files, tgt_files: aligned files, as `split_files` returns them.
        src_tokenizer, tgt_tokenizer: used inside the pipeline.
        options: how pairs are batched, as for `make_dataset`.
        num_shards, shard_index: this reader's share, for several workers:
            whole files (file i goes to shard i mod num_shards) when there
            are at least as many files as shards, else every num_shards-th
            pair. Shards are disjoint and together hold every pair.
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
    if options.shuffle:
        files = files.shuffle(
            max(count, 1), seed=options.seed, reshuffle_each_iteration=True
        )

    def pairs(src_path, tgt_path):
        return tf.data.Dataset.zip(
            (tf.data.TextLineDataset(src_path), tf.data.TextLineDataset(tgt_path))
        )

    text = files.interleave(
        pairs,
        cycle_length=min(4, max(count, 1)) if options.shuffle else 1,
        block_length=16,
    )
    if num_shards > 1 and not by_file:
        text = text.shard(num_shards, shard_index)
    return batch_pairs(text, src_tokenizer, tgt_tokenizer, options, clean=_clean)


def _clean(lines):
    # `read_lines`' cleaning, in the graph: no byte-order mark, no trailing
    # whitespace (TextLineDataset drops only the "\n").
    lines = tf.strings.regex_replace(lines, "^\ufeff", "")
    return tf.strings.regex_replace(lines, r"\s+$", "")
