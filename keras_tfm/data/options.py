"""`BatchingOptions`: how sentence pairs become batches, defined once.

`make_dataset` and `stream_dataset` take them as one object, and the
training job builds it from its config (`[training] batch_size` or
`batch_tokens`, `[data] shuffle_buffer`, `[tokenizer] sampling_alpha` and
`sampling_nbest_size`, the model's `max_length`); the config's keys that
mean the same take their defaults from here.
"""

import dataclasses

from keras_tfm.constants import MAX_NBEST_SIZE
from keras_tfm.errors import FieldError, check_int


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """How sentence pairs are filtered, shuffled and batched.

    Args:
        batch_size: sentences per batch. Exactly one of `batch_size` and
            `batch_tokens` must be given.
        batch_tokens: group sentences of similar length so that each padded
            batch holds at most this many tokens per side (batch size times
            padded length, for source and for target alike). Must be at
            least `max_length`.
        max_length: longest source or target kept, in tokens, the added
            start/end token included (at least 2); longer pairs are dropped.
        shuffle: shuffle pairs before batching, reshuffling every pass. For
            a given `seed` the sequence of batches (over all passes) is the
            same on every run (unless `sampling_alpha` draws segmentations).
        shuffle_buffer: pairs shuffled at a time. None (default): all of
            them, which `make_dataset` knows; a stream needs a number to
            shuffle.
        seed: the shuffle seed (>= 0).
        repeat: repeat forever (reshuffled each time when `shuffle`).
        drop_remainder: drop incomplete batches.
        sampling_alpha, sampling_nbest_size: when `sampling_alpha` > 0 (it
            must be below 1), each pass draws a new subword segmentation of
            every sentence (`Tokenizer.sampler`; BPE-dropout for BPE
            models), a regulariser for training data; `sampling_nbest_size`
            is -1 (all) or 2 to `MAX_NBEST_SIZE` candidates.
        cache: keep the token ids of the first pass in memory and read
            later passes from there (shuffling and batching still run each
            pass). Not with `sampling_alpha` > 0.

    Raises:
        FieldError: naming the bad field.
    """

    batch_size: int | None = None
    batch_tokens: int | None = None
    max_length: int = 128
    shuffle: bool = False
    shuffle_buffer: int | None = None
    seed: int = 0
    repeat: bool = False
    drop_remainder: bool = False
    sampling_alpha: float = 0.0
    sampling_nbest_size: int = -1
    cache: bool = False

    def __post_init__(self):
        owner = type(self).__name__
        if (self.batch_size is None) == (self.batch_tokens is None):
            given = "neither is set" if self.batch_size is None else "both are set"
            raise FieldError(
                owner, "batch_size", f"and batch_tokens: {given}; give exactly one"
            )
        check_int(owner, "max_length", self.max_length, 2)
        if self.batch_size is not None:
            check_int(owner, "batch_size", self.batch_size, 1)
        if self.batch_tokens is not None:
            check_int(owner, "batch_tokens", self.batch_tokens, 1)
            if self.batch_tokens < self.max_length:
                raise FieldError(
                    owner,
                    "batch_tokens",
                    f"({self.batch_tokens}) must be >= max_length "
                    f"({self.max_length}): the longest pairs would fit in no batch",
                )
        if self.shuffle_buffer is not None:
            check_int(owner, "shuffle_buffer", self.shuffle_buffer, 1)
        check_int(owner, "seed", self.seed, 0)
        for name in ("shuffle", "repeat", "drop_remainder", "cache"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise FieldError(owner, name, f"must be True or False, got {value!r}")
        alpha = self.sampling_alpha
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, (int, float))
            or not 0.0 <= alpha < 1.0
        ):
            raise FieldError(
                owner, "sampling_alpha", f"must be in [0.0, 1.0), got {alpha!r}"
            )
        object.__setattr__(self, "sampling_alpha", float(alpha))
        nbest = self.sampling_nbest_size
        if (
            isinstance(nbest, bool)
            or not isinstance(nbest, int)
            or (nbest != -1 and not 2 <= nbest <= MAX_NBEST_SIZE)
        ):
            raise FieldError(
                owner,
                "sampling_nbest_size",
                f"must be -1 (all) or in [2, {MAX_NBEST_SIZE}], got {nbest!r}",
            )
        if self.cache and self.sampling_alpha:
            raise FieldError(
                owner,
                "cache",
                "= True would keep the first pass's sampled segmentations; it "
                "cannot be combined with sampling_alpha > 0",
            )
