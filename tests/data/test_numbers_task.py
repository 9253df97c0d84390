import pytest

from keras_tfm.data.numbers_task import number_pairs, split_numbers, write_numbers_task
from keras_tfm.data.text_files import read_parallel

# Written out by hand, independently of num2words.
KNOWN = {
    0: ("null", "zero"),
    1: ("eins", "one"),
    21: ("einundzwanzig", "twenty-one"),
    54: ("vierundfünfzig", "fifty-four"),
    101: ("einhunderteins", "one hundred and one"),
    2354: (
        "zweitausenddreihundertvierundfünfzig",
        "two thousand, three hundred and fifty-four",
    ),
    9999: (
        "neuntausendneunhundertneunundneunzig",
        "nine thousand, nine hundred and ninety-nine",
    ),
}


def read(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_number_pairs_known_values():
    assert number_pairs(KNOWN) == list(KNOWN.values())
    assert number_pairs([]) == []


def test_split_numbers_disjoint_and_complete():
    splits = split_numbers(999, valid_size=100, test_size=50, seed=3)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [850, 100, 50]
    train, valid, test = (set(splits[s]) for s in ("train", "valid", "test"))
    assert not train & valid and not train & test and not valid & test
    assert train | valid | test == set(range(1000))
    assert split_numbers(999, 100, 50, seed=3) == splits
    assert split_numbers(999, 100, 50, seed=4)["valid"] != splits["valid"]


def test_write_numbers_task(tmp_path):
    out = write_numbers_task(
        tmp_path / "numbers", max_number=2999, valid_size=200, test_size=300, seed=1
    )
    assert out == tmp_path / "numbers"
    assert sorted(p.name for p in out.iterdir()) == [
        "test.de",
        "test.en",
        "train.de",
        "train.en",
        "valid.de",
        "valid.en",
    ]
    sizes = {"train": 2500, "valid": 200, "test": 300}
    # German number words are unique, so each line maps back to its number.
    number_of = {de: n for n, (de, _) in enumerate(number_pairs(range(3000)))}
    seen = {}
    for split, size in sizes.items():
        de = read(out / f"{split}.de")
        en = read(out / f"{split}.en")
        assert len(de) == len(en) == size
        seen[split] = {number_of[line] for line in de}
        assert len(seen[split]) == size
        for de_line, en_line in zip(de, en):
            n = number_of[de_line]
            if n in KNOWN:
                assert (de_line, en_line) == KNOWN[n]
    assert not seen["train"] & seen["valid"]
    assert not seen["train"] & seen["test"]
    assert not seen["valid"] & seen["test"]
    assert set().union(*seen.values()) == set(range(3000))
    assert read_parallel(out, "valid", "de", "en") == (
        read(out / "valid.de"),
        read(out / "valid.en"),
    )


def test_write_numbers_task_defaults(tmp_path):
    out = write_numbers_task(tmp_path)
    english_of = {}
    for split, size in {"train": 9000, "valid": 500, "test": 500}.items():
        de = read(out / f"{split}.de")
        en = read(out / f"{split}.en")
        assert len(de) == len(en) == size
        english_of.update(zip(de, en))
    assert len(english_of) == 10000
    for de, en in KNOWN.values():
        assert english_of[de] == en


def test_write_numbers_task_is_deterministic(tmp_path):
    def contents(seed, name):
        out = write_numbers_task(
            tmp_path / name, max_number=499, valid_size=50, test_size=50, seed=seed
        )
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}

    first = contents(0, "a")
    assert contents(0, "b") == first
    assert contents(1, "c") != first


def test_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="no training"):
        write_numbers_task(tmp_path, max_number=99, valid_size=50, test_size=50)
    with pytest.raises(ValueError):
        split_numbers(-1)
    assert not list(tmp_path.iterdir())
