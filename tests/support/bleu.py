"""BLEU written out from its definition, to check keras_tfm's scores."""

import collections
import math


def reference_bleu(hypotheses, references):
    """Corpus BLEU-4 (Papineni et al. 2002) on whitespace tokens: clipped
    n-gram precisions, their geometric mean, and the brevity penalty."""
    matches, totals = [0] * 4, [0] * 4
    hyp_length = ref_length = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp, ref = hypothesis.split(), reference.split()
        hyp_length += len(hyp)
        ref_length += len(ref)
        for n in range(1, 5):
            hyp_ngrams = collections.Counter(
                tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1)
            )
            ref_ngrams = collections.Counter(
                tuple(ref[i : i + n]) for i in range(len(ref) - n + 1)
            )
            matches[n - 1] += sum(
                min(count, ref_ngrams[gram]) for gram, count in hyp_ngrams.items()
            )
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    brevity = min(0.0, 1.0 - ref_length / hyp_length)
    return 100 * math.exp(log_precision + brevity)
