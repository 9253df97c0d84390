"""Translation scores: sacreBLEU, and the tokenized lowercase BLEU of papers.

sacreBLEU scores detokenized, cased output with its own tokenizer, so its
figures compare across systems. Most published Multi30k and WMT figures are
instead "tokenized BLEU": hypotheses and references lowercased, punctuation
normalized and split by the Moses tokenizer, then scored on those tokens.
`moses_tokenize` applies that pipeline to hypotheses (it reproduces Multi30k's
`tok/*.lc.norm.tok.*` files line for line from the raw ones), and
`corpus_scores` scores them against such a pre-tokenized reference file.
"""

from keras_tfm.errors import DataError


def moses_tokenize(sentences, lang):
    """Lowercases, normalizes punctuation and Moses-tokenizes each sentence.

    Special characters are escaped (`'` -> `&apos;`) as the Moses scripts
    do, which is how the published reference files are written.
    """
    from sacremoses import MosesPunctNormalizer, MosesTokenizer

    normalizer = MosesPunctNormalizer(lang=lang)
    tokenizer = MosesTokenizer(lang=lang)
    return [
        tokenizer.tokenize(
            normalizer.normalize(sentence.lower()), escape=True, return_str=True
        )
        for sentence in sentences
    ]


def read_reference(path, expected_lines, split="test"):
    """The lines of a reference file; DataError if their count is wrong."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise DataError(f"{path}: cannot read reference ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 ({error.reason})") from None
    if len(lines) != expected_lines:
        raise DataError(
            f"{path}: {len(lines)} lines, but the {split} set has {expected_lines}"
        )
    return lines


def corpus_scores(hypotheses, references, tokenized_references=None, lang="en"):
    """Scores detokenized hypotheses against their references.

    Args:
        hypotheses: translations, one string per sentence.
        references: the raw reference sentences, same length.
        tokenized_references: optional lowercased, Moses-tokenized references
            (e.g. Multi30k's `tok/test.lc.norm.tok.en`); when given, the
            result also holds `tokenized_bleu`.
        lang: the target language, for the Moses rules.

    Returns:
        A dict: `sacrebleu` (cased, detokenized, sacreBLEU's 13a tokenizer),
        `exact_match` (fraction of identical sentences, ignoring outer
        whitespace), `sentences` and, with `tokenized_references`,
        `tokenized_bleu`. BLEU values are rounded to 2 decimals.
    """
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses for {len(references)} references"
        )
    exact = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references))
    scores = {
        "sacrebleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
        "exact_match": exact / max(len(references), 1),
        "sentences": len(references),
    }
    if tokenized_references is not None:
        if len(tokenized_references) != len(references):
            raise ValueError(
                f"{len(tokenized_references)} tokenized references for "
                f"{len(references)} references"
            )
        tokenized = moses_tokenize(hypotheses, lang)
        bleu = sacrebleu.corpus_bleu(
            tokenized, [tokenized_references], tokenize="none", force=True
        )
        scores["tokenized_bleu"] = round(bleu.score, 2)
    return scores
