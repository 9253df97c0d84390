"""The interface every decoding strategy implements (`keras.ops` only).

A search is a small object that turns a decoder step function into output
tokens. `generate` builds the step (the encoder runs once, then one token
per row and step) and hands it to the search named by
`DecodingOptions.method`; a new strategy is one new `Search` subclass,
listed in `keras_tfm.decoding.searches.SEARCHES`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class SearchInputs:
    """What `generate` hands a search.

    Args:
        step: `step(sequences, t, state) -> (logits, state)` over
            `batch * rows_per_sentence` rows (`decoder_step`).
        state: its initial state, a structure of tensors whose first axis
            is the rows.
        batch: source sentences.
        max_length: the most tokens generated, end token included.
        start_id, end_id: the target's start and end tokens.
        vocab: the target vocabulary size.
        empty: bool `(batch,)`, sources of padding only: returned as
            padding with score 0.
        restrict: `restrict(logits, t) -> logits` applied before a token
            is chosen (not to the scores), or None.
        compact: drop finished sentences from the batch as they end
            (shapes that change every step: TensorFlow graphs and eager
            execution only).
        n_best: hypotheses to return per sentence.
    """

    step: object
    state: object
    batch: object
    max_length: int
    start_id: int
    end_id: int
    vocab: int
    empty: object
    restrict: object
    compact: bool
    n_best: int


class Search:
    """Chooses output tokens, one step at a time, from a decoder step.

    Subclasses set `method` (the name `DecodingOptions.method` uses) and
    `deterministic` (one answer per input: evaluation and serving accept
    only those), and implement `__call__`.
    """

    method = None
    deterministic = True

    @classmethod
    def from_options(cls, options, *, temperature, top_k, top_p, seed):
        """The search for `DecodingOptions` `options` (sampling arguments
        are for the searches that draw)."""
        return cls()

    @property
    def rows_per_sentence(self):
        """Decoder rows per source sentence (beam search: the beams)."""
        return 1

    @property
    def hypotheses(self):
        """The most hypotheses per sentence it can return (`n_best`)."""
        return self.rows_per_sentence

    def __call__(self, inputs):
        """Runs the search on `SearchInputs`.

        Returns:
            `(tokens (batch, n_best, max_length) int32,
            scores (batch, n_best) float32)`.
        """
        raise NotImplementedError
