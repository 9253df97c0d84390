"""Sentence pairs in memory as a `tf.data` pipeline of padded batches.

`batch_pairs` is the pipeline's core (tokenize, add the special ids, drop
pairs that are too long, cache, shuffle, batch by size or by tokens), which
`make_dataset` runs on lists of sentences and `stream_dataset`
(`keras_tfm.data.streaming`) on lines read from files. How it batches is a
`BatchingOptions`.
"""

import dataclasses
import math
from collections.abc import Sequence

import tensorflow as tf

from keras_tfm.constants import PADDING_ID
from keras_tfm.data.options import BatchingOptions
from keras_tfm.data.text_files import read_parallel
from keras_tfm.errors import FieldError
from keras_tfm.text.tokenizer import Tokenizer

# Sentences are tokenized this many at a time inside the pipeline.
_TOKENIZE_BATCH = 512


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
    options: BatchingOptions,
) -> tf.data.Dataset:
    """Builds a training or evaluation pipeline for sentence pairs.

    With source ids `x` and target ids `y` (as `tokenize` returns them), each
    example becomes

        source = x + [end]       (the encoder sees where the sentence ends)
        target = [start] + y     (decoder input)
        labels = y + [end]       (decoder input shifted left by one)

    Pairs whose source or labels are longer than `options.max_length` are
    dropped. Batches are padded with 0 at the end of each row.

    Args:
        sources, targets: aligned sentences.
        src_tokenizer, tgt_tokenizer: used inside the pipeline.
        options: how pairs are batched; a `shuffle_buffer` of None shuffles
            all of them at once.

    Returns:
        A dataset of `({"source": (B, S), "target": (B, T)}, labels (B, T))`,
        all int32.

    Raises:
        ValueError: when `sources` and `targets` differ in length.
    """
    if len(sources) != len(targets):
        raise ValueError(f"got {len(sources)} sources but {len(targets)} targets")
    text = tf.data.Dataset.from_tensor_slices(
        (
            tf.constant(list(sources), dtype=tf.string),
            tf.constant(list(targets), dtype=tf.string),
        )
    )
    if options.shuffle_buffer is None:
        options = dataclasses.replace(options, shuffle_buffer=max(1, len(sources)))
    return batch_pairs(text, src_tokenizer, tgt_tokenizer, options)


def text_dataset(
    data_dir,
    split: str,
    src: str,
    tgt: str,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    options: BatchingOptions,
) -> tf.data.Dataset:
    """`read_parallel` followed by `make_dataset`."""
    sources, targets = read_parallel(data_dir, split, src, tgt)
    return make_dataset(sources, targets, src_tokenizer, tgt_tokenizer, options)


def batch_pairs(text, src_tokenizer, tgt_tokenizer, options, clean=None):
    """Sentence pairs `text` tokenized, filtered, shuffled and batched.

    Args:
        text: a dataset of `(source, target)` string pairs.
        src_tokenizer, tgt_tokenizer: used inside the pipeline.
        options: a `BatchingOptions` whose `shuffle_buffer` is set (when it
            shuffles).
        clean: None, or a function applied to batches of source and of target
            strings before they are tokenized.
    """
    if options.shuffle and options.shuffle_buffer is None:
        raise FieldError(
            type(options).__name__,
            "shuffle_buffer",
            "is None (all pairs), which only make_dataset can count: give a "
            "number to shuffle a stream",
        )
    alpha, nbest = options.sampling_alpha, options.sampling_nbest_size
    if alpha:
        src_tokenize = src_tokenizer.sampler(alpha, nbest)
        tgt_tokenize = tgt_tokenizer.sampler(alpha, nbest)
    else:
        src_tokenize, tgt_tokenize = src_tokenizer.tokenize, tgt_tokenizer.tokenize
    src_end = src_tokenizer.end_id
    tgt_start = tgt_tokenizer.start_id
    tgt_end = tgt_tokenizer.end_id
    max_length = options.max_length

    def tokenize(src_text, tgt_text):
        if clean is not None:
            src_text, tgt_text = clean(src_text), clean(tgt_text)
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
    if options.cache:
        # Later passes read the ids from memory instead of tokenizing again,
        # which also frees the CPU the tokenizer took from the training steps.
        dataset = dataset.cache()
    if options.shuffle:
        dataset = dataset.shuffle(
            options.shuffle_buffer, seed=options.seed, reshuffle_each_iteration=True
        )
    if options.repeat:
        dataset = dataset.repeat()
    dataset = _batch(dataset, options)
    # No autotuning thread: destroying an iterator (Keras does so at each
    # epoch and each validation pass) joins that thread, and TensorFlow 2.21
    # can leave it asleep until its next tuning round, up to a minute later.
    # Without it, AUTOTUNE parallelism keeps its starting value, the
    # thread pool's size (at most 16).
    tf_options = tf.data.Options()
    tf_options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(tf_options)


def _batch(dataset, options):
    """Padded batches of `batch_size` pairs, or of pairs of similar length
    holding at most `batch_tokens` tokens per side."""
    padded_shapes = ({"source": [None], "target": [None]}, [None])
    padding_values = ({"source": PADDING_ID, "target": PADDING_ID}, PADDING_ID)
    if options.batch_size is not None:
        return dataset.padded_batch(
            options.batch_size,
            padded_shapes=padded_shapes,
            padding_values=padding_values,
            drop_remainder=options.drop_remainder,
        )
    boundaries = bucket_boundaries(options.max_length)
    # Bucket i holds lengths below boundaries[i], so at most boundaries[i] - 1
    # tokens per row after padding. The bucket past the last boundary stays
    # empty (longer pairs were filtered out).
    sizes = [max(1, options.batch_tokens // (bound - 1)) for bound in boundaries]
    sizes.append(1)
    return dataset.bucket_by_sequence_length(
        element_length_func=lambda inputs, labels: tf.maximum(
            tf.size(inputs["source"]), tf.size(labels)
        ),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=sizes,
        padded_shapes=padded_shapes,
        padding_values=padding_values,
        drop_remainder=options.drop_remainder,
    )
