"""Random sampling for `keras_tfm.generate`: temperature, top-k and nucleus
(top-p) sampling (`keras.ops` only)."""

import keras
from keras import ops

from keras_tfm.decoding.greedy_search import (
    greedy_choice,
    sequential_search,
    with_restriction,
)
from keras_tfm.decoding.search import Search
from keras_tfm.decoding.token_buffers import exclude_padding


class RandomSampling(Search):
    """Draws each token from the model's distribution.

    Args:
        temperature: > 0; divides the logits before sampling.
        top_k: sample only among the k most likely tokens (None: all).
        top_p: sample only from the nucleus, the smallest set of most likely
            tokens whose probability reaches `top_p` (after temperature and
            top-k); None: all.
        seed: an int (same seed, same samples), a
            `keras.random.SeedGenerator`, or None for Keras' global
            generator.

    Scores are the total log-probability of the drawn tokens under the
    unmodified model (temperature 1, no filtering).
    """

    method = "sample"
    deterministic = False

    def __init__(self, temperature=1.0, top_k=None, top_p=None, seed=None):
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.seed = seed

    @classmethod
    def from_options(cls, options, *, temperature, top_k, top_p, seed):
        return cls(temperature, top_k, top_p, seed)

    def __call__(self, inputs):
        uniforms = keras.random.uniform(
            (inputs.max_length, inputs.batch), dtype="float32", seed=self.seed
        )
        choose = sampler(uniforms, self.temperature, self.top_k, self.top_p)
        tokens, scores = sequential_search(
            inputs.step,
            inputs.state,
            with_restriction(choose, inputs.restrict),
            inputs.batch,
            inputs.max_length,
            inputs.start_id,
            inputs.end_id,
            inputs.empty,
        )
        return tokens[:, None], scores[:, None]


def sampler(uniforms, temperature, top_k, top_p):
    """Inverse-CDF sampling with the pre-drawn `uniforms[t]` `(batch,)`.

    Drawing all uniforms before the loop keeps the loop free of random-state
    updates (so it traces under `jax.jit`) and costs one float per token.
    """

    def choose(logits, t):
        if top_k == 1:
            return greedy_choice(logits, t)
        scaled = exclude_padding(logits / temperature)
        vocab = scaled.shape[-1]
        candidates = None
        if top_k is not None and top_k < vocab:
            scaled, candidates = ops.top_k(scaled, top_k)
        elif top_p is not None and top_p < 1:
            scaled, candidates = ops.top_k(scaled, vocab)  # a full sort
        probs = ops.softmax(scaled, axis=-1)
        if top_p is not None and top_p < 1:
            # `probs` is sorted: keep the tokens whose preceding mass is
            # below top_p (the first one always).
            preceding = ops.cumsum(probs, axis=-1) - probs
            probs = ops.where(ops.less(preceding, top_p), probs, 0.0)
        cdf = ops.cumsum(probs, axis=-1)
        target = ops.take(uniforms, t, axis=0)[:, None] * cdf[:, -1:]
        index = ops.sum(ops.cast(ops.less_equal(cdf, target), "int32"), axis=-1)
        # Rounding can push the index past the last token with mass.
        width = ops.shape(probs)[-1]
        last_valid = (width - 1) - ops.argmax(
            ops.flip(ops.greater(probs, 0.0), axis=-1), axis=-1
        )
        index = ops.minimum(index, ops.cast(last_valid, "int32"))
        if candidates is None:
            return index
        return ops.take_along_axis(
            ops.cast(candidates, "int32"), index[:, None], axis=-1
        )[:, 0]

    return choose
