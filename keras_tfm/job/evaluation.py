"""Translating a test set with a trained model and scoring it."""

import time
from pathlib import Path

from keras_tfm.decoding.translator import make_translator
from keras_tfm.text.scoring import corpus_scores, read_reference


def read_tokenized_reference(evaluation, data_dir, expected_lines, split="test"):
    """The pre-tokenized references `[evaluation]` names, or None."""
    if not evaluation.tokenized_reference:
        return None
    path = Path(data_dir) / Path(evaluation.tokenized_reference).expanduser()
    return read_reference(path, expected_lines, split)


def score_test_set(model, tokenizers, evaluation, lang, test, tokenized=None):
    """Translates the test set with each method of `evaluation` and scores it.

    Args:
        model: a `build_transformer` model.
        tokenizers: `(src_tokenizer, tgt_tokenizer)`.
        evaluation: an `EvaluationConfig` (primary method, `compare`, batch
            size).
        lang: the target language, for the Moses rules of tokenized BLEU.
        test: `(sources, references)`.
        tokenized: `read_tokenized_reference`'s result (None: no tokenized
            BLEU).

    Returns:
        The metrics of the primary method, with a `by_method` table of all
        of them (each with its decoding time in seconds) when there are
        several, and the primary method's translations.
    """
    sources, references = test
    by_method, primary_hypotheses = {}, None
    for decoding in evaluation.methods():
        translate = make_translator(
            model, *tokenizers, decoding, batch_size=evaluation.batch_size
        )
        started = time.perf_counter()
        hypotheses = translate(sources)
        seconds = time.perf_counter() - started
        scores = corpus_scores(hypotheses, references, tokenized, lang=lang)
        scores["decode_seconds"] = round(seconds, 1)
        by_method[decoding.method] = scores
        if primary_hypotheses is None:
            primary_hypotheses = hypotheses
    primary = evaluation.method
    metrics = {**by_method[primary], "decoding": primary}
    if len(by_method) > 1:
        metrics["by_method"] = by_method
    return metrics, primary_hypotheses


def score_lines(metrics, split="test"):
    """One summary line per decoding method of `score_test_set`'s metrics
    (scored on `split`)."""
    by_method = metrics.get("by_method", {metrics["decoding"]: metrics})
    lines = []
    for method, scores in by_method.items():
        parts = [f"sacreBLEU {scores['sacrebleu']}"]
        if "tokenized_bleu" in scores:
            parts.append(f"tokenized BLEU {scores['tokenized_bleu']}")
        parts.append(
            f"exact match {scores['exact_match']:.4f} on "
            f"{scores['sentences']} sentences"
        )
        lines.append(f"{split} ({method}): " + ", ".join(parts))
    return lines
