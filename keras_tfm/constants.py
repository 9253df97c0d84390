"""Values every part of keras_tfm agrees on, defined once.

The special token ids are reserved by every tokenizer keras_tfm trains and
are the defaults of `keras_tfm.generate`; layers, losses, metrics, data
pipelines, decoding and exports take them from here.
"""

# The token id that means "no token": batches are padded with it, it is
# masked everywhere, and decoding never generates it.
PADDING_ID = 0
# Unknown piece, start and end of a sentence.
UNK_ID = 1
START_ID = 2
END_ID = 3

# What masked attention logits are set to. Finite rather than -inf, so that
# exp() underflows to 0 and sums or differences never give inf - inf = NaN,
# while it still loses against any real log-probability.
MASK_FILL_VALUE = -1.0e9

# SentencePiece samples among at most this many segmentations.
MAX_NBEST_SIZE = 512
