"""The built-in default task: German number words to English number words.

The data is generated locally with `num2words`, e.g. 54 becomes the pair
("vierundfünfzig", "fifty-four"). It needs no download and is small enough
to train a tiny model on a CPU in minutes.
"""

import random
from collections.abc import Iterable
from pathlib import Path

from num2words import num2words

from keras_tfm.files import write_atomic

SOURCE_LANG = "de"
TARGET_LANG = "en"
SPLITS = ("train", "valid", "test")


def number_pairs(numbers: Iterable[int]) -> list[tuple[str, str]]:
    """Returns `(german, english)` number words for each of `numbers`."""
    return [
        (num2words(n, lang=SOURCE_LANG), num2words(n, lang=TARGET_LANG))
        for n in numbers
    ]


def split_numbers(
    max_number: int = 9999, valid_size: int = 500, test_size: int = 500, seed: int = 0
) -> dict[str, list[int]]:
    """Splits `range(max_number + 1)` into disjoint train/valid/test numbers.

    A permutation seeded with `seed` is cut into `valid_size` valid numbers,
    then `test_size` test numbers; the rest is train.

    Raises:
        ValueError: when the sizes leave no number for training.
    """
    if max_number < 0:
        raise ValueError(f"max_number must be >= 0, got {max_number}")
    if valid_size < 0 or test_size < 0:
        raise ValueError(
            f"valid_size and test_size must be >= 0, got {valid_size}, {test_size}"
        )
    total = max_number + 1
    if valid_size + test_size >= total:
        raise ValueError(
            f"valid_size + test_size = {valid_size + test_size} leaves no training"
            f" numbers out of {total}"
        )
    numbers = list(range(total))
    random.Random(seed).shuffle(numbers)
    return {
        "valid": numbers[:valid_size],
        "test": numbers[valid_size : valid_size + test_size],
        "train": numbers[valid_size + test_size :],
    }


def write_numbers_task(
    out_dir,
    *,
    max_number: int = 9999,
    valid_size: int = 500,
    test_size: int = 500,
    seed: int = 0,
) -> Path:
    """Writes `{train,valid,test}.{de,en}` under `out_dir` and returns it.

    Line i of `split.de` and `split.en` hold the same number. The splits are
    those of `split_numbers`; each file is written atomically.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = split_numbers(max_number, valid_size, test_size, seed)
    for split in SPLITS:
        pairs = number_pairs(splits[split])
        for lang, column in ((SOURCE_LANG, 0), (TARGET_LANG, 1)):
            text = "".join(pair[column] + "\n" for pair in pairs)
            write_atomic(out_dir / f"{split}.{lang}", text.encode("utf-8"))
    return out_dir
