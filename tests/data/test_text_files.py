"""Reading parallel text files: line ends, counts, UTF-8, split files."""

import pytest

from keras_tfm.data.text_files import (
    count_lines,
    read_lines,
    read_parallel,
    split_files,
)
from keras_tfm.errors import DataError


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
