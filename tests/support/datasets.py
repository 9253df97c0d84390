"""Checking the batches of keras_tfm's input pipelines against the
tokenizers, example by example."""

import sentencepiece as spm
import tensorflow as tf

from keras_tfm.data.text_files import split_files

START, END = 2, 3


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
