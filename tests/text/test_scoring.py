"""Translation scores: Moses tokenization and tokenized lowercase BLEU."""

import pytest
from support.bleu import reference_bleu
from support.paths import MULTI30K

from keras_tfm.errors import DataError
from keras_tfm.text.scoring import corpus_scores, moses_tokenize, read_reference


@pytest.mark.skipif(not MULTI30K.is_dir(), reason="needs ../shared/data/multi30k")
@pytest.mark.parametrize("split", ["test", "valid"])
def test_moses_tokenize_reproduces_the_published_multi30k_tokenization(split):
    # The dataset's own script made tok/*.lc.norm.tok.en from the raw files;
    # tokenized BLEU is only comparable if hypotheses go through the same.
    raw = (MULTI30K / f"{split}.en").read_text("utf-8").splitlines()
    published = (
        (MULTI30K / "tok" / f"{split}.lc.norm.tok.en").read_text("utf-8").splitlines()
    )
    assert len(raw) == len(published) >= 1000
    ours = moses_tokenize(raw, "en")
    mismatches = [i for i, (a, b) in enumerate(zip(ours, published)) if a != b]
    assert mismatches == []
    # The escaping and punctuation cases are among them.
    assert any("&apos;" in line for line in ours)


def test_moses_tokenize_lowercases_splits_punctuation_and_escapes():
    assert moses_tokenize(
        ["A man's dog, running.", "Two \u201cgirls\u201d jump!"], "en"
    ) == ["a man &apos;s dog , running .", "two &quot; girls &quot; jump !"]


def test_tokenized_bleu_equals_an_independent_bleu_on_the_same_tokens():
    hypotheses = [
        "A man in a blue shirt is riding a bike.",
        "Two dogs play in the snow.",
        "A woman sings, and a child is watching.",
    ]
    # The hypotheses as the Moses pipeline must tokenize them (written out
    # by hand here), and their references.
    hypothesis_tokens = [
        "a man in a blue shirt is riding a bike .",
        "two dogs play in the snow .",
        "a woman sings , and a child is watching .",
    ]
    tokenized_references = [
        "a man in a blue shirt rides a bicycle .",
        "two dogs are playing in the snow .",
        "a woman is singing while a child watches .",
    ]
    references = ["unused, cased"] * 3
    scores = corpus_scores(hypotheses, references, tokenized_references, lang="en")
    expected = reference_bleu(hypothesis_tokens, tokenized_references)
    assert 10.0 < expected < 90.0
    assert scores["tokenized_bleu"] == pytest.approx(expected, abs=0.005)
    assert scores["sentences"] == 3 and scores["exact_match"] == 0.0


def test_perfect_translations_score_100_both_ways():
    references = ["A dog runs on the beach.", "Two men's hats are red."]
    tokenized = moses_tokenize(references, "en")
    scores = corpus_scores(references, references, tokenized)
    assert scores == {
        "sacrebleu": 100.0,
        "exact_match": 1.0,
        "sentences": 2,
        "tokenized_bleu": 100.0,
    }
    # Case is ignored by the tokenized score, not by sacreBLEU.
    lowered = [line.lower() for line in references]
    scores = corpus_scores(lowered, references, tokenized)
    assert scores["tokenized_bleu"] == 100.0 and scores["sacrebleu"] < 100.0


def test_read_reference_names_the_file_and_the_line_counts(tmp_path):
    path = tmp_path / "ref.tok.en"
    path.write_text("a b c\nd e f\n", encoding="utf-8")
    assert read_reference(path, 2) == ["a b c", "d e f"]
    message = r"ref\.tok\.en: 2 lines, but the test set has 3"
    with pytest.raises(DataError, match=message):
        read_reference(path, 3)
    with pytest.raises(DataError, match=r"missing\.en: cannot read reference"):
        read_reference(tmp_path / "missing.en", 3)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        corpus_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="1 tokenized references for 2 references"):
        corpus_scores(["a", "b"], ["a", "b"], ["a"])
