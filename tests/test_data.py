import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

from keras_tfm.data.numbers_task import write_numbers_task
from keras_tfm.data.pipelines import (
    bucket_boundaries,
    check_parallel_files,
    count_lines,
    make_dataset,
    read_lines,
    read_parallel,
    split_files,
    stream_dataset,
    text_dataset,
)
from keras_tfm.errors import DataError
from keras_tfm.text.tokenizer import Tokenizer, train_sentencepiece

START, END = 2, 3


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    data_dir = write_numbers_task(
        tmp_path_factory.mktemp("numbers"), max_number=599, valid_size=50, test_size=50
    )
    sources, targets = read_parallel(data_dir, "train", "de", "en")
    src_tok = Tokenizer(train_sentencepiece(sources, 128, "bpe"))
    tgt_tok = Tokenizer(train_sentencepiece(targets, 128, "bpe"))
    return data_dir, sources, targets, src_tok, tgt_tok


def expected_examples(task, max_length):
    """(source, target, labels) id lists, computed with sentencepiece itself."""
    _, sources, targets, src_tok, tgt_tok = task
    src_sp = spm.SentencePieceProcessor(model_proto=src_tok.model_proto)
    tgt_sp = spm.SentencePieceProcessor(model_proto=tgt_tok.model_proto)
    examples = []
    for x, y in zip(src_sp.encode(sources), tgt_sp.encode(targets)):
        if len(x) + 1 <= max_length and len(y) + 1 <= max_length:
            examples.append((x + [END], [START] + y, y + [END]))
    return examples


def unpad(row):
    """Drops the trailing padding, checking that 0 occurs only there."""
    row = list(row)
    length = len(row)
    while length and row[length - 1] == 0:
        length -= 1
    assert 0 not in row[:length], row
    assert length > 0
    return row[:length]


def collect(dataset):
    """Per-example (source, target, labels) lists and per-batch shapes."""
    examples, shapes = [], []
    for inputs, labels in dataset:
        assert set(inputs) == {"source", "target"}
        source, target = inputs["source"], inputs["target"]
        for tensor in (source, target, labels):
            assert tensor.dtype == tf.int32
            assert tensor.shape.rank == 2
        assert target.shape == labels.shape
        assert source.shape[0] == target.shape[0]
        shapes.append((source.shape[0], source.shape[1], target.shape[1]))
        rows = zip(source.numpy(), target.numpy(), labels.numpy())
        for s, t, lab in rows:
            t, lab = unpad(t), unpad(lab)
            assert len(t) == len(lab)
            # The decoder input is the label sequence shifted right by one.
            assert t[0] == START and lab[-1] == END
            assert t[1:] == lab[:-1]
            examples.append((unpad(s), t, lab))
        # Every batch is padded to its longest row, no wider.
        assert max(len(e[0]) for e in examples[-source.shape[0] :]) == source.shape[1]
        assert max(len(e[1]) for e in examples[-target.shape[0] :]) == target.shape[1]
    return examples, shapes


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
    dataset = make_dataset(sources, targets, src_tok, tgt_tok, batch_size=64)
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
        sources, targets, src_tok, tgt_tok, batch_size=16, max_length=5
    )
    examples, shapes = collect(dataset)
    assert examples == expected
    assert max(max(s, t) for _, s, t in shapes) <= 5


def test_drop_remainder(task):
    _, sources, targets, src_tok, tgt_tok = task
    dataset = make_dataset(
        sources, targets, src_tok, tgt_tok, batch_size=64, drop_remainder=True
    )
    _, shapes = collect(dataset)
    assert [b for b, _, _ in shapes] == [64] * 7


def test_shuffle_is_seeded(task):
    _, sources, targets, src_tok, tgt_tok = task

    def epochs(seed, count=2):
        dataset = make_dataset(
            sources, targets, src_tok, tgt_tok, batch_size=32, shuffle=True, seed=seed
        )
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
    dataset = make_dataset(
        sources[:10], targets[:10], src_tok, tgt_tok, batch_size=4, repeat=True
    )
    examples, _ = collect(dataset.take(6))
    assert len(examples) == 24
    assert examples[:10] == examples[10:20] == expected_examples(task, 128)[:10]


@pytest.mark.parametrize("batch_tokens, max_length", [(64, 16), (100, 64)])
def test_batch_tokens_bound(task, batch_tokens, max_length):
    _, sources, targets, src_tok, tgt_tok = task
    dataset = make_dataset(
        sources,
        targets,
        src_tok,
        tgt_tok,
        batch_tokens=batch_tokens,
        max_length=max_length,
        shuffle=True,
    )
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
        data_dir, "valid", "de", "en", src_tok, tgt_tok, batch_size=8
    )
    examples, _ = collect(dataset)
    assert len(examples) == 50


def test_bad_arguments(task):
    _, sources, targets, src_tok, tgt_tok = task
    with pytest.raises(ValueError, match="exactly one"):
        make_dataset(sources, targets, src_tok, tgt_tok)
    with pytest.raises(ValueError, match="exactly one"):
        make_dataset(sources, targets, src_tok, tgt_tok, batch_size=8, batch_tokens=64)
    with pytest.raises(ValueError, match="max_length"):
        make_dataset(sources, targets, src_tok, tgt_tok, batch_tokens=10, max_length=16)
    with pytest.raises(ValueError, match="targets"):
        make_dataset(sources, targets[:-1], src_tok, tgt_tok, batch_size=8)


# ------------------------------------------------------------ streaming text
def pairs_of(dataset):
    """Every (source, labels) pair of a dataset, as tuples of ids."""
    return [(tuple(e[0]), tuple(e[2])) for e in collect(dataset)[0]]


def write_shards(directory, sources, targets, sizes):
    """`train.NN.{de,en}` shards of the given sizes; returns their paths."""
    directory.mkdir(exist_ok=True)
    start = 0
    for index, size in enumerate(sizes):
        end = start + size
        for side, lines in (("de", sources), ("en", targets)):
            text = "\n".join(lines[start:end]) + "\n"
            (directory / f"train.{index:02d}.{side}").write_text(text, "utf-8")
        start = end
    assert start == len(sources)
    return split_files(directory, "train", "de", "en")


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
    options = dict(batch_tokens=96, max_length=12)
    streamed = stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, **options)
    in_memory = make_dataset(sources, targets, src_tok, tgt_tok, **options)
    assert collect(streamed) == collect(in_memory)


def test_shuffled_shards_hold_every_pair_once(task, tmp_path):
    _, sources, targets, src_tok, tgt_tok = task
    files = write_shards(tmp_path, sources, targets, [100, 250, 50, len(sources) - 400])
    options = dict(batch_size=32, max_length=64)
    expected = sorted(
        pairs_of(make_dataset(sources, targets, src_tok, tgt_tok, **options))
    )
    assert len(expected) == len(sources)  # none is too long

    def stream(**kwargs):
        return stream_dataset(
            *files, src_tok, tgt_tok, shuffle=True, shuffle_buffer=64, **options,
            **kwargs,
        )  # fmt: skip

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
    options = dict(batch_size=32, max_length=64, shuffle=True, shuffle_buffer=100)
    shards = [
        pairs_of(
            stream_dataset(
                *files, src_tok, tgt_tok, num_shards=3, shard_index=i, **options
            )
        )
        for i in range(3)
    ]
    everything = [pair for shard in shards for pair in shard]
    expected = pairs_of(make_dataset(sources, targets, src_tok, tgt_tok, batch_size=32))
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
    import keras_tfm.data.pipelines

    monkeypatch.setattr(keras_tfm.data.pipelines, "_CHUNK_BYTES", chunk)
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
    options = dict(batch_tokens=96, max_length=12, shuffle=True, seed=5)
    streamed = stream_dataset(
        *files, src_tok, tgt_tok, shuffle_buffer=100_000, **options
    )
    in_memory = make_dataset(sources, targets, src_tok, tgt_tok, **options)
    assert collect(streamed) == collect(in_memory)


def test_subword_sampling_keeps_the_pairs_and_redraws_each_pass(task, tmp_path):
    """With `sampling_alpha`, every pass holds every pair once, each side a
    segmentation of its own sentence, and the segmentations change from pass
    to pass; without it the ids are the best segmentation."""
    _, sources, targets, src_tok, tgt_tok = task
    src_sp = spm.SentencePieceProcessor(model_proto=src_tok.model_proto)
    tgt_sp = spm.SentencePieceProcessor(model_proto=tgt_tok.model_proto)
    (src_path,), (tgt_path,) = write_shards(tmp_path, sources, targets, [len(sources)])
    options = dict(batch_tokens=512, max_length=64, shuffle=True, seed=3)
    sampled = stream_dataset(
        [src_path], [tgt_path], src_tok, tgt_tok, sampling_alpha=0.3, **options
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
    best = stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, **options)
    for source, _, labels in collect(best)[0]:
        assert source[:-1] == src_sp.encode(src_sp.decode(source[:-1]))
        assert labels[:-1] == tgt_sp.encode(tgt_sp.decode(labels[:-1]))


def test_cached_stream_reads_later_passes_from_memory(task, tmp_path):
    """With `cache`, every pass gives the uncached pipeline's batches for the
    same seed and pass, and a pass after the first no longer reads the files:
    text written into them afterwards does not show."""
    _, sources, targets, src_tok, tgt_tok = task
    (src_path,), (tgt_path,) = write_shards(tmp_path, sources, targets, [len(sources)])
    options = dict(batch_tokens=96, max_length=12, shuffle=True, seed=5)
    cached = stream_dataset(
        [src_path], [tgt_path], src_tok, tgt_tok, cache=True, **options
    )
    plain = stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, **options)
    first = collect(cached)
    assert first == collect(plain)
    second_plain = collect(plain)
    assert second_plain != first  # reshuffled each pass
    # Only the first pair is replaced, so the shuffle order stays the same.
    src_path.write_text("\n".join(["zzz"] + sources[1:]) + "\n", "utf-8")
    assert collect(cached) == second_plain
    changed = pairs_of(
        stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, **options)
    )
    assert sorted(changed) != sorted(pairs_of(cached))


def test_cache_refuses_sampled_segmentations(task):
    _, sources, targets, src_tok, tgt_tok = task
    with pytest.raises(ValueError, match="sampling_alpha"):
        make_dataset(
            sources, targets, src_tok, tgt_tok, batch_size=8, cache=True,
            sampling_alpha=0.1,
        )  # fmt: skip


def test_pipelines_run_without_the_autotuning_thread(task, tmp_path):
    """Destroying an iterator joins tf.data's autotuning thread, which can
    sleep up to a minute first (RESULTS.md: the stalled epoch boundaries);
    every batched pipeline turns it off."""
    _, sources, targets, src_tok, tgt_tok = task
    (src_path,), (tgt_path,) = write_shards(tmp_path, sources, targets, [len(sources)])
    pipelines = [
        make_dataset(sources, targets, src_tok, tgt_tok, batch_size=8),
        make_dataset(
            sources,
            targets,
            src_tok,
            tgt_tok,
            batch_tokens=96,
            max_length=12,
            shuffle=True,
        ),
        stream_dataset([src_path], [tgt_path], src_tok, tgt_tok, batch_size=8),
    ]
    for dataset in pipelines:
        assert dataset.options().autotune.enabled is False


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
    monkeypatch, pairs, shuffle_buffer, sampling_alpha, workers, cached
):
    """`keras-tfm train` keeps the token ids when its worker's share of the
    corpus fits the shuffle buffer and segmentations are not sampled; the
    valid split is always kept."""
    from types import SimpleNamespace

    import keras_tfm.data.pipelines as data_module
    from keras_tfm import training
    from keras_tfm.job import train as run_module

    calls = {}

    def record(name):
        def pipeline(*args, **kwargs):
            calls[name] = kwargs
            return tf.data.Dataset.range(1)

        return pipeline

    monkeypatch.setattr(data_module, "stream_dataset", record("train"))
    monkeypatch.setattr(data_module, "make_dataset", record("valid"))
    monkeypatch.setattr(training, "input_shard", lambda strategy: (workers, 0))
    config = SimpleNamespace(
        training=SimpleNamespace(
            batch_size=None, batch_tokens=2048, accumulate_steps=1, seed=0,
            steps_per_epoch=None,
        ),
        data=SimpleNamespace(shuffle_buffer=shuffle_buffer),
        tokenizer=SimpleNamespace(
            sampling_alpha=sampling_alpha, sampling_nbest_size=-1
        ),
    )  # fmt: skip
    run = SimpleNamespace(config=config, strategy=tf.distribute.get_strategy())
    corpus = SimpleNamespace(
        train=([], []), train_pairs=pairs, valid=([], []), tokenizers=(None, None)
    )
    run_module._datasets(run, corpus, max_length=64)
    assert calls["train"]["cache"] is cached
    assert calls["train"]["shuffle_buffer"] == shuffle_buffer
    assert calls["valid"]["cache"] is True
