"""In-memory pipelines (`make_dataset`, `text_dataset`): batches that match the
tokenizers, length filter, shuffling, token-bounded buckets."""

import numpy as np
import pytest
import tensorflow as tf
from support.datasets import (
    collect,
    expected_examples,
    write_shards,
)

from keras_tfm.data.batching import bucket_boundaries, make_dataset, text_dataset
from keras_tfm.data.options import BatchingOptions
from keras_tfm.data.streaming import stream_dataset
from keras_tfm.errors import FieldError


def test_fixed_batches_match_tokenizer(task):
    _, sources, targets, src_tok, tgt_tok = task
    dataset = make_dataset(
        sources, targets, src_tok, tgt_tok, BatchingOptions(batch_size=64)
    )
    spec_inputs, spec_labels = dataset.element_spec
    assert spec_inputs["source"].dtype == spec_labels.dtype == tf.int32
    examples, shapes = collect(dataset)
    assert examples == expected_examples(task, 128)
    assert len(examples) == len(sources) == 500
    assert [b for b, _, _ in shapes] == [64] * 7 + [52]


def test_length_filter(task):
    _, sources, targets, src_tok, tgt_tok = task
    expected = expected_examples(task, 5)
    assert 0 < len(expected) < len(sources)
    dataset = make_dataset(
        sources, targets, src_tok, tgt_tok, BatchingOptions(batch_size=16, max_length=5)
    )
    examples, shapes = collect(dataset)
    assert examples == expected
    assert max(max(s, t) for _, s, t in shapes) <= 5


def test_drop_remainder(task):
    _, sources, targets, src_tok, tgt_tok = task
    options = BatchingOptions(batch_size=64, drop_remainder=True)
    dataset = make_dataset(sources, targets, src_tok, tgt_tok, options)
    _, shapes = collect(dataset)
    assert [b for b, _, _ in shapes] == [64] * 7


def test_shuffle_is_seeded(task):
    _, sources, targets, src_tok, tgt_tok = task

    def epochs(seed, count=2):
        options = BatchingOptions(batch_size=32, shuffle=True, seed=seed)
        dataset = make_dataset(sources, targets, src_tok, tgt_tok, options)
        return [collect(dataset)[0] for _ in range(count)]

    first, second = epochs(5), epochs(5)
    assert first == second
    # Reshuffled every epoch, each epoch a permutation of the data.
    assert first[0] != first[1]
    expected = sorted(expected_examples(task, 128))
    assert sorted(first[0]) == sorted(first[1]) == expected
    assert first[0] != sorted(first[0])
    assert epochs(6, count=1)[0] != first[0]


def test_repeat(task):
    _, sources, targets, src_tok, tgt_tok = task
    options = BatchingOptions(batch_size=4, repeat=True)
    dataset = make_dataset(sources[:10], targets[:10], src_tok, tgt_tok, options)
    examples, _ = collect(dataset.take(6))
    assert len(examples) == 24
    assert examples[:10] == examples[10:20] == expected_examples(task, 128)[:10]


@pytest.mark.parametrize("batch_tokens, max_length", [(64, 16), (100, 64)])
def test_batch_tokens_bound(task, batch_tokens, max_length):
    _, sources, targets, src_tok, tgt_tok = task
    options = BatchingOptions(
        batch_tokens=batch_tokens, max_length=max_length, shuffle=True
    )
    dataset = make_dataset(sources, targets, src_tok, tgt_tok, options)
    examples, shapes = collect(dataset)
    assert sorted(examples) == sorted(expected_examples(task, max_length))
    for batch, source_length, target_length in shapes:
        assert batch * source_length <= batch_tokens
        assert batch * target_length <= batch_tokens
    # Buckets actually group several sentences per batch.
    assert np.mean([b for b, _, _ in shapes]) > 4


def test_bucket_boundaries():
    bounds = bucket_boundaries(128)
    assert bounds[0] == 9 and bounds[-1] == 129
    assert all(a < b for a, b in zip(bounds, bounds[1:]))
    assert bucket_boundaries(5) == [6]


def test_text_dataset(task):
    data_dir, _, _, src_tok, tgt_tok = task
    dataset = text_dataset(
        data_dir, "valid", "de", "en", src_tok, tgt_tok, BatchingOptions(batch_size=8)
    )
    examples, _ = collect(dataset)
    assert len(examples) == 50


def test_bad_arguments(task, tmp_path):
    _, sources, targets, src_tok, tgt_tok = task
    with pytest.raises(ValueError, match="got 500 sources but 499 targets"):
        make_dataset(
            sources, targets[:-1], src_tok, tgt_tok, BatchingOptions(batch_size=8)
        )
    # A stream cannot count its pairs, so shuffling one needs a buffer size.
    (src_path,), (tgt_path,) = write_shards(tmp_path, sources, targets, [len(sources)])
    with pytest.raises(FieldError) as error:
        stream_dataset(
            [src_path],
            [tgt_path],
            src_tok,
            tgt_tok,
            BatchingOptions(batch_size=8, shuffle=True),
        )
    assert error.value.field == "shuffle_buffer"


def test_pipelines_run_without_the_autotuning_thread(task, tmp_path):
    """Destroying an iterator joins tf.data's autotuning thread, which can
    sleep up to a minute first (benchmarks/HISTORY.md: the stalled epoch boundaries);
    every batched pipeline turns it off."""
    _, sources, targets, src_tok, tgt_tok = task
    (src_path,), (tgt_path,) = write_shards(tmp_path, sources, targets, [len(sources)])
    by_size = BatchingOptions(batch_size=8)
    by_tokens = BatchingOptions(batch_tokens=96, max_length=12, shuffle=True)
    pipelines = [
        make_dataset(sources, targets, src_tok, tgt_tok, by_size),
        make_dataset(sources, targets, src_tok, tgt_tok, by_tokens),
        stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, by_size),
    ]
    for dataset in pipelines:
        assert dataset.options().autotune.enabled is False
