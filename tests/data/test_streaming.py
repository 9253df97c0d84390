"""Streamed text (`stream_dataset`): the in-memory batches, shuffled shards,
worker shards, subword sampling and the cache."""

import dataclasses

import pytest
import sentencepiece as spm
from support.datasets import (
    END,
    START,
    collect,
    pairs_of,
    write_shards,
)

from keras_tfm.data.batching import make_dataset
from keras_tfm.data.options import BatchingOptions
from keras_tfm.data.streaming import stream_dataset
from keras_tfm.data.text_files import (
    check_parallel_files,
    split_files,
)


def test_stream_dataset_gives_make_dataset_batches(task, tmp_path):
    """Unshuffled, the stream batches exactly as the in-memory pipeline,
    with a byte-order mark, CRLF line ends and trailing blanks cleaned as
    `read_lines` cleans them."""
    _, sources, targets, src_tok, tgt_tok = task
    src_path, tgt_path = tmp_path / "train.de", tmp_path / "train.en"
    src_path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(sources).encode() + b"\r\n")
    tgt_path.write_bytes(" \t\n".join(targets).encode())
    assert split_files(tmp_path, "train", "de", "en") == ([src_path], [tgt_path])
    assert check_parallel_files([src_path], [tgt_path]) == len(sources)
    options = BatchingOptions(batch_tokens=96, max_length=12)
    streamed = stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, options)
    in_memory = make_dataset(sources, targets, src_tok, tgt_tok, options)
    assert collect(streamed) == collect(in_memory)


def test_shuffled_shards_hold_every_pair_once(task, tmp_path):
    _, sources, targets, src_tok, tgt_tok = task
    files = write_shards(tmp_path, sources, targets, [100, 250, 50, len(sources) - 400])
    options = BatchingOptions(batch_size=32, max_length=64)
    expected = sorted(
        pairs_of(make_dataset(sources, targets, src_tok, tgt_tok, options))
    )
    assert len(expected) == len(sources)  # none is too long

    def stream(seed):
        shuffled = dataclasses.replace(
            options, shuffle=True, shuffle_buffer=64, seed=seed
        )
        return stream_dataset(*files, src_tok, tgt_tok, shuffled)

    first, again = pairs_of(stream(seed=1)), pairs_of(stream(seed=1))
    assert sorted(first) == expected
    assert first == again  # seeded
    assert first != pairs_of(stream(seed=2))
    assert first[:50] != expected[:50]
    # Two passes of one dataset: every pair once per pass, in a new order.
    two = pairs_of(stream(seed=1).repeat(2))
    assert sorted(two[: len(expected)]) == expected
    assert two[: len(expected)] != two[len(expected) :]


@pytest.mark.parametrize(
    "sizes", [[250, 250], [130, 120, 125, 125]], ids=["by-pair", "by-file"]
)
def test_worker_shards_are_disjoint_and_complete(task, tmp_path, sizes):
    """Three workers: by whole files when there are at least as many files
    as workers, else by pair; no pair is read twice and none is lost."""
    _, sources, targets, src_tok, tgt_tok = task
    files = write_shards(tmp_path, sources, targets, sizes)
    options = BatchingOptions(
        batch_size=32, max_length=64, shuffle=True, shuffle_buffer=100
    )
    shards = [
        pairs_of(
            stream_dataset(
                *files, src_tok, tgt_tok, options, num_shards=3, shard_index=i
            )
        )
        for i in range(3)
    ]
    everything = [pair for shard in shards for pair in shard]
    expected = pairs_of(
        make_dataset(sources, targets, src_tok, tgt_tok, BatchingOptions(batch_size=32))
    )
    assert sorted(everything) == sorted(expected)
    assert all(len(shard) > 0 for shard in shards)
    if len(sizes) >= 3:  # whole files: shard 0 holds files 0 and 3
        assert len(shards[0]) == sizes[0] + sizes[3]


def test_stream_shuffles_as_before_when_the_buffer_holds_the_corpus(task, tmp_path):
    """One file and a buffer larger than the corpus (the numbers task,
    Multi30k): the stream yields the in-memory pipeline's shuffled batches,
    so those runs train on the same data order as before."""
    data_dir, sources, targets, src_tok, tgt_tok = task
    files = split_files(data_dir, "train", "de", "en")
    options = BatchingOptions(batch_tokens=96, max_length=12, shuffle=True, seed=5)
    streamed = stream_dataset(
        *files, src_tok, tgt_tok, dataclasses.replace(options, shuffle_buffer=100_000)
    )
    in_memory = make_dataset(sources, targets, src_tok, tgt_tok, options)
    assert collect(streamed) == collect(in_memory)


def test_subword_sampling_keeps_the_pairs_and_redraws_each_pass(task, tmp_path):
    """With `sampling_alpha`, every pass holds every pair once, each side a
    segmentation of its own sentence, and the segmentations change from pass
    to pass; without it the ids are the best segmentation."""
    _, sources, targets, src_tok, tgt_tok = task
    src_sp = spm.SentencePieceProcessor(model_proto=src_tok.model_proto)
    tgt_sp = spm.SentencePieceProcessor(model_proto=tgt_tok.model_proto)
    (src_path,), (tgt_path,) = write_shards(tmp_path, sources, targets, [len(sources)])
    options = BatchingOptions(
        batch_tokens=512, max_length=64, shuffle=True, shuffle_buffer=100_000, seed=3
    )
    sampled = stream_dataset(
        [src_path],
        [tgt_path],
        src_tok,
        tgt_tok,
        dataclasses.replace(options, sampling_alpha=0.3),
    )
    passes = []
    for _ in range(2):
        examples = collect(sampled)[0]
        texts = []
        for source, target, labels in examples:
            assert source[-1] == END and labels[-1] == END
            assert target == [START] + labels[:-1]
            texts.append((src_sp.decode(source[:-1]), tgt_sp.decode(labels[:-1])))
        assert sorted(texts) == sorted(zip(sources, targets))
        passes.append(sorted(examples, key=lambda e: tgt_sp.decode(e[2][:-1])))
    assert passes[0] != passes[1]
    best = stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, options)
    for source, _, labels in collect(best)[0]:
        assert source[:-1] == src_sp.encode(src_sp.decode(source[:-1]))
        assert labels[:-1] == tgt_sp.encode(tgt_sp.decode(labels[:-1]))


def test_cached_stream_reads_later_passes_from_memory(task, tmp_path):
    """With `cache`, every pass gives the uncached pipeline's batches for the
    same seed and pass, and a pass after the first no longer reads the files:
    text written into them afterwards does not show."""
    _, sources, targets, src_tok, tgt_tok = task
    (src_path,), (tgt_path,) = write_shards(tmp_path, sources, targets, [len(sources)])
    options = BatchingOptions(
        batch_tokens=96, max_length=12, shuffle=True, shuffle_buffer=100_000, seed=5
    )
    cached = stream_dataset(
        [src_path],
        [tgt_path],
        src_tok,
        tgt_tok,
        dataclasses.replace(options, cache=True),
    )
    plain = stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, options)
    first = collect(cached)
    assert first == collect(plain)
    second_plain = collect(plain)
    assert second_plain != first  # reshuffled each pass
    # Only the first pair is replaced, so the shuffle order stays the same.
    src_path.write_text("\n".join(["zzz"] + sources[1:]) + "\n", "utf-8")
    assert collect(cached) == second_plain
    changed = pairs_of(
        stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, options)
    )
    assert sorted(changed) != sorted(pairs_of(cached))
