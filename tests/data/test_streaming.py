import dataclasses

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
from support.datasets import (
    END,
    START,
    collect,
    expected_examples,
    pairs_of,
    write_shards,
)
from support.paths import TINY

from keras_tfm.data.batching import bucket_boundaries, make_dataset, text_dataset
from keras_tfm.data.options import BatchingOptions
from keras_tfm.data.streaming import stream_dataset
from keras_tfm.data.text_files import (
    check_parallel_files,
    count_lines,
    read_lines,
    read_parallel,
    split_files,
)
from keras_tfm.errors import DataError, FieldError
from keras_tfm.text.tokenizer import train_sentencepiece


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_read_parallel(tmp_path):
    write(tmp_path / "train.de", "eins  \r\nzwei\n\ndrei\u2028vier\n".encode())
    write(tmp_path / "train.en", b"one\ntwo \t\n\nthree four")
    sources, targets = read_parallel(tmp_path, "train", "de", "en")
    assert sources == ["eins", "zwei", "", "drei\u2028vier"]
    assert targets == ["one", "two", "", "three four"]
    write(tmp_path / "bom.de", b"\xef\xbb\xbfeins\n")
    assert read_lines(tmp_path / "bom.de") == ["eins"]


def test_missing_file(tmp_path):
    write(tmp_path / "train.de", b"eins\n")
    with pytest.raises(DataError) as error:
        read_parallel(tmp_path, "train", "de", "en")
    assert str(error.value) == f"missing file: {tmp_path / 'train.en'}"
    assert isinstance(error.value, ValueError)


def test_line_count_mismatch(tmp_path):
    write(tmp_path / "valid.de", b"eins\nzwei\ndrei\n")
    write(tmp_path / "valid.en", b"one\ntwo\n")
    with pytest.raises(DataError) as error:
        read_parallel(tmp_path, "valid", "de", "en")
    assert str(error.value) == (
        f"{tmp_path / 'valid.de'} has 3 lines but {tmp_path / 'valid.en'} has 2 lines"
    )


def test_empty_file(tmp_path):
    write(tmp_path / "test.de", b"eins\n")
    write(tmp_path / "test.en", b"")
    with pytest.raises(DataError) as error:
        read_parallel(tmp_path, "test", "de", "en")
    assert str(error.value) == f"{tmp_path / 'test.en'}: file is empty"


@pytest.mark.parametrize(
    "data, line, byte, column",
    [
        (b"ok\n\xff\xfe bad\n", 2, "0xff", 1),
        ("eins\nzwei\nfünf ".encode() + b"\xc3(\n", 3, "0xc3", 6),
    ],
)
def test_invalid_utf8(tmp_path, data, line, byte, column):
    write(tmp_path / "train.de", b"a\nb\nc\n")
    path = write(tmp_path / "train.en", data)
    with pytest.raises(DataError) as error:
        read_parallel(tmp_path, "train", "de", "en")
    message = str(error.value)
    assert message == (
        f"{path}, line {line}: not valid UTF-8 (byte {byte} at column {column})"
    )
    assert "\n" not in message


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


@pytest.mark.parametrize(
    "values, field, problem",
    [
        ({}, "batch_size", "and batch_tokens: neither is set; give exactly one"),
        (
            dict(batch_size=8, batch_tokens=64),
            "batch_size",
            "and batch_tokens: both are set; give exactly one",
        ),
        (
            dict(batch_tokens=10, max_length=16),
            "batch_tokens",
            "(10) must be >= max_length (16): the longest pairs would fit in no batch",
        ),
        (dict(batch_size=0), "batch_size", "must be an integer >= 1, got 0"),
        (dict(batch_size=True), "batch_size", "must be an integer >= 1, got True"),
        (
            dict(batch_size=8, max_length=1),
            "max_length",
            "must be an integer >= 2, got 1",
        ),
        (
            dict(batch_size=8, shuffle_buffer=0),
            "shuffle_buffer",
            "must be an integer >= 1, got 0",
        ),
        (dict(batch_size=8, seed=-1), "seed", "must be an integer >= 0, got -1"),
        (
            dict(batch_size=8, shuffle="yes"),
            "shuffle",
            "must be True or False, got 'yes'",
        ),
        (dict(batch_size=8, cache=1), "cache", "must be True or False, got 1"),
        (
            dict(batch_size=8, sampling_alpha=1.0),
            "sampling_alpha",
            "must be in [0.0, 1.0), got 1.0",
        ),
        (
            dict(batch_size=8, sampling_alpha=-0.1),
            "sampling_alpha",
            "must be in [0.0, 1.0), got -0.1",
        ),
        (
            dict(batch_size=8, sampling_nbest_size=1),
            "sampling_nbest_size",
            "must be -1 (all) or in [2, 512], got 1",
        ),
        (
            dict(batch_size=8, sampling_nbest_size=513),
            "sampling_nbest_size",
            "must be -1 (all) or in [2, 512], got 513",
        ),
        (
            dict(batch_size=8, cache=True, sampling_alpha=0.1),
            "cache",
            "= True would keep the first pass's sampled segmentations; it cannot "
            "be combined with sampling_alpha > 0",
        ),
    ],
)
def test_batching_options_name_the_bad_field(values, field, problem):
    with pytest.raises(FieldError) as error:
        BatchingOptions(**values)
    assert (error.value.owner, error.value.field) == ("BatchingOptions", field)
    assert str(error.value) == f"BatchingOptions.{field} {problem}"


def test_batching_options_accept_the_edges_and_default_once():
    edges = BatchingOptions(
        batch_tokens=16, max_length=16, shuffle_buffer=1, sampling_nbest_size=512
    )
    assert (edges.batch_tokens, edges.max_length, edges.batch_size) == (16, 16, None)
    alpha = BatchingOptions(batch_size=1, max_length=2, sampling_alpha=0)
    assert alpha.sampling_alpha == 0.0 and isinstance(alpha.sampling_alpha, float)
    assert BatchingOptions(batch_size=4) == BatchingOptions(
        batch_size=4,
        max_length=128,
        shuffle=False,
        shuffle_buffer=None,
        seed=0,
        repeat=False,
        drop_remainder=False,
        sampling_alpha=0.0,
        sampling_nbest_size=-1,
        cache=False,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        alpha.batch_size = 2


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


def test_split_files_names_the_missing_partner(tmp_path):
    write(tmp_path / "train.a.de", b"eins\n")
    write(tmp_path / "train.a.en", b"one\n")
    write(tmp_path / "train.b.de", b"zwei\n")
    with pytest.raises(DataError) as error:
        split_files(tmp_path, "train", "de", "en")
    assert str(error.value) == f"missing file: {tmp_path / 'train.b.en'}"
    with pytest.raises(DataError, match="missing file: .*valid.de"):
        split_files(tmp_path, "valid", "de", "en")


@pytest.mark.parametrize("chunk", [3, 7, 1 << 20])
@pytest.mark.parametrize(
    "data",
    [
        b"ok\n\xff\xfe bad\n",
        "eins\nzwei\nfünf ".encode() + b"\xc3(\n",
        "a\nbb\nccc\n\nfünfzehn\nsechzehn".encode(),
        b"\xef\xbb\xbfeins\nzwei\n",
        b"x\n" * 20 + "\u00e4\u00f6\u00fc".encode() + b"\x80\n",
    ],
)
def test_count_lines_agrees_with_read_lines(tmp_path, monkeypatch, chunk, data):
    """The streaming check counts and rejects what `read_lines` does, with
    the same message, also where a chunk boundary cuts a line or a
    character."""
    import keras_tfm.data.text_files

    monkeypatch.setattr(keras_tfm.data.text_files, "_CHUNK_BYTES", chunk)
    path = write(tmp_path / "train.de", data)
    try:
        expected = len(read_lines(path))
    except DataError as error:
        with pytest.raises(DataError) as streamed:
            count_lines(path)
        assert str(streamed.value) == str(error)
    else:
        assert count_lines(path) == expected
    with pytest.raises(DataError, match="file is empty"):
        count_lines(write(tmp_path / "empty.de", b""))
    with pytest.raises(DataError, match="missing file"):
        count_lines(tmp_path / "none.de")


def test_tokenizer_trains_on_a_seeded_sample(task):
    """`input_sentence_size` bounds what SentencePiece keeps; the sample, and
    so the model, is the same for the same seed."""
    _, sources, *_ = task
    lines = (line for line in sources)
    first = train_sentencepiece(lines, 64, "bpe", input_sentence_size=200, seed=3)
    again = train_sentencepiece(
        iter(sources), 64, "bpe", input_sentence_size=200, seed=3
    )
    whole = train_sentencepiece(sources, 64, "bpe")
    assert first == again
    assert first != whole


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


def test_pipelines_run_without_the_autotuning_thread(task, tmp_path):
    """Destroying an iterator joins tf.data's autotuning thread, which can
    sleep up to a minute first (RESULTS.md: the stalled epoch boundaries);
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


def job_pipelines(monkeypatch, tmp_path, values, train_pairs, workers, resumed=None):
    """`{"train": (args, kwargs), "valid": (args, kwargs)}`: what the training
    job's `make_pipelines` passes to `stream_dataset` and `make_dataset` for
    a config of `values`, as the last of `workers` workers, after `resumed`
    epochs."""
    import json
    from types import SimpleNamespace

    import keras_tfm.data.batching
    import keras_tfm.data.streaming
    from keras_tfm import training
    from keras_tfm.job.pipelines import make_pipelines
    from keras_tfm.job.run_config import RunConfig
    from keras_tfm.job.run_directory import RunDirectory

    calls = {}

    def record(name):
        def pipeline(*args, **kwargs):
            calls[name] = (args, kwargs)
            return tf.data.Dataset.range(1)

        return pipeline

    monkeypatch.setattr(keras_tfm.data.streaming, "stream_dataset", record("train"))
    monkeypatch.setattr(keras_tfm.data.batching, "make_dataset", record("valid"))
    monkeypatch.setattr(training, "input_shard", lambda _: (workers, workers - 1))
    writes = RunDirectory(tmp_path)
    if resumed is not None:
        writes.backup.mkdir()
        metadata = writes.backup / "training_metadata.json"
        metadata.write_text(json.dumps({"epoch": resumed}))
    run = SimpleNamespace(
        config=RunConfig.from_dict(values),
        strategy=tf.distribute.get_strategy(),
        writes=writes,
    )
    corpus = SimpleNamespace(
        train=(["train.de"], ["train.en"]),
        train_pairs=train_pairs,
        valid=(["eins"], ["one"]),
        tokenizers=("src tokenizer", "tgt tokenizer"),
    )
    pipelines = make_pipelines(run, corpus)
    assert [int(x) for x in pipelines.train] == [int(x) for x in pipelines.valid] == [0]
    return calls


@pytest.mark.parametrize(
    "pairs, shuffle_buffer, sampling_alpha, workers, cached",
    [
        (29_000, 100_000, 0.0, 1, True),  # Multi30k: the buffer holds it all
        (29_000, 10_000, 0.0, 1, False),  # streamed through a smaller buffer
        (29_000, 100_000, 0.1, 1, False),  # sampled segmentations: never kept
        (150_000, 100_000, 0.0, 2, True),  # each worker's half fits
        (250_000, 100_000, 0.0, 2, False),
    ],
)
def test_training_job_caches_a_corpus_its_buffer_holds(
    monkeypatch, tmp_path, pairs, shuffle_buffer, sampling_alpha, workers, cached
):
    """`keras-tfm train` keeps the token ids when its worker's share of the
    corpus fits the shuffle buffer and segmentations are not sampled; the
    valid split is always kept."""
    values = {
        "data": {"shuffle_buffer": shuffle_buffer},
        "tokenizer": {"sampling_alpha": sampling_alpha},
        "model": {"max_length": 64},
        "training": {"batch_tokens": 2048},
    }
    calls = job_pipelines(monkeypatch, tmp_path, values, pairs, workers)
    (*_, train_options), shards = calls["train"]
    assert train_options == BatchingOptions(
        batch_tokens=2048,
        max_length=64,
        shuffle=True,
        shuffle_buffer=shuffle_buffer,
        sampling_alpha=sampling_alpha,
        cache=cached,
    )
    assert shards == {"num_shards": workers, "shard_index": workers - 1}
    (*_, valid_options), _ = calls["valid"]
    assert valid_options == BatchingOptions(
        batch_tokens=2048, max_length=64, cache=True
    )


def test_training_job_batches_as_its_config_says(monkeypatch, tmp_path):
    """Accumulated batches of 3 x 16 sentences, epochs of fixed steps (the
    text repeats), sampled segmentations, and a seed moved by the 2 epochs a
    backup records; the valid split gets plain batches of 16."""
    values = {
        "data": {"shuffle_buffer": 1000},
        "tokenizer": {"sampling_alpha": 0.25, "sampling_nbest_size": 8},
        "model": {"max_length": 40},
        "training": {
            "batch_size": 16,
            "accumulate_steps": 3,
            "steps_per_epoch": 5,
            "seed": 7,
        },
    }
    calls = job_pipelines(monkeypatch, tmp_path, values, 500, 2, resumed=2)
    args, shards = calls["train"]
    assert args == (
        ["train.de"],
        ["train.en"],
        "src tokenizer",
        "tgt tokenizer",
        BatchingOptions(
            batch_size=48,
            max_length=40,
            shuffle=True,
            shuffle_buffer=1000,
            seed=9,
            repeat=True,
            sampling_alpha=0.25,
            sampling_nbest_size=8,
        ),
    )
    assert shards == {"num_shards": 2, "shard_index": 1}
    assert calls["valid"] == (
        (
            ["eins"],
            ["one"],
            "src tokenizer",
            "tgt tokenizer",
            BatchingOptions(batch_size=16, max_length=40, cache=True),
        ),
        {},
    )


def test_training_job_builds_its_pipelines_once(monkeypatch, tmp_path):
    """One training pipeline and one valid pipeline per run, also when a
    cooldown makes the job count the run's batches before `fit`."""
    import keras_tfm.data.batching
    import keras_tfm.data.streaming
    from keras_tfm.job.run_config import load_run_config
    from keras_tfm.job.train import train

    built = []

    def counted(module, name):
        real = getattr(module, name)

        def pipeline(*args, **kwargs):
            built.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, pipeline)

    counted(keras_tfm.data.streaming, "stream_dataset")
    counted(keras_tfm.data.batching, "make_dataset")
    config = load_run_config(TINY).updated(
        {"training.epochs": 1, "training.cooldown_steps": 2}
    )
    lines = []
    train(config, run_dir=tmp_path / "run", export=False, log=lines.append)
    # 300 numbers less 30 valid and 30 test: 240 pairs, 8 batches of 32.
    assert "the learning rate cools down to zero over the last 2 of 8 " in "\n".join(
        lines
    )
    assert sorted(built) == ["make_dataset", "stream_dataset"]
