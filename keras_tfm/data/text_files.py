"""Line-aligned text files: reading, checking and listing a split's files.

Every reader cleans lines the same way: split on "\\n" only, a byte-order
mark at the start of a file dropped, trailing whitespace removed. A file
that is missing, empty or not valid UTF-8 is a `DataError` naming the file
(and the line and column of a bad byte).
"""

from pathlib import Path

from keras_tfm.errors import DataError

# `count_lines` reads files this many bytes at a time.
_CHUNK_BYTES = 1 << 23
_BOM = b"\xef\xbb\xbf"


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
    if raw_lines and raw_lines[0].startswith(_BOM):
        raw_lines[0] = raw_lines[0][len(_BOM) :]
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
