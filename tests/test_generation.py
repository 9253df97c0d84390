"""Tests for keras_tfm.generation: cached vs uncached decoding, search, sampling.

Every check is made against an independent teacher-forced pass of the
functional model (`model({"source": ..., "target": ...})`) in numpy.
"""

import keras
import numpy as np
import pytest
from conftest import to_numpy

from keras_tfm import TransformerConfig, build_transformer
from keras_tfm.generation import generate, length_penalty, make_generate_fn

START, END = 1, 2
VOCAB = 20
BACKEND = keras.config.backend()


def tiny_model(seed, **overrides):
    keras.utils.set_random_seed(seed)
    options = dict(
        src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, dropout=0.0, max_length=16
    )
    options.update(overrides)
    return build_transformer(TransformerConfig.preset("tiny", **options))


def random_sources(seed, batch, length, pad=True):
    """Random ids in [3, VOCAB), the tail of some rows padded with 0."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, (batch, length))
    if pad:
        lengths = rng.integers(1, length + 1, batch)
        lengths[0] = length
        ids = ids * (np.arange(length)[None] < lengths[:, None])
    return ids.astype("int32")


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def teacher_forced(model, source, tokens):
    """Per-step logits `(batch, steps, vocab)` of the model fed `tokens`.

    The decoder input is `[START] + tokens[:-1]`; returns the logits and the
    log-probabilities of `tokens` (0 after the end, where tokens are 0).
    """
    tokens = np.asarray(tokens)
    target = np.concatenate(
        [np.full((len(tokens), 1), START, "int32"), tokens[:, :-1]], axis=1
    )
    logits = to_numpy(model({"source": source, "target": target}))
    picked = np.take_along_axis(log_softmax(logits), tokens[..., None], -1)[..., 0]
    return logits, np.where(tokens != 0, picked, 0.0)


def assert_well_formed(tokens, max_length):
    """No padding before the end token, only padding after it."""
    tokens = np.asarray(tokens)
    assert tokens.dtype == np.int32
    assert tokens.shape[1] == max_length
    for row in tokens:
        ends = np.flatnonzero(row == END)
        stop = ends[0] + 1 if len(ends) else len(row)
        assert np.all(row[:stop] != 0), row
        assert np.all(row[stop:] == 0), row


def run(model, source, **kwargs):
    kwargs.setdefault("start_id", START)
    kwargs.setdefault("end_id", END)
    tokens, scores = generate(model, source, **kwargs)
    tokens, scores = to_numpy(tokens), to_numpy(scores)
    assert scores.dtype == np.float32 and scores.shape == (len(source),)
    assert_well_formed(tokens, kwargs["max_length"])
    return tokens, scores


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained for a few seconds to copy its source."""
    model = tiny_model(0)
    rng = np.random.default_rng(0)
    n, length = 2048, 8
    lengths = rng.integers(2, length + 1, n)
    seqs = rng.integers(3, VOCAB, (n, length)) * (
        np.arange(length)[None] < lengths[:, None]
    )
    target = np.zeros((n, length + 1), "int32")
    target[:, 0] = START
    target[:, 1:] = seqs
    labels = np.zeros((n, length + 1), "int32")
    labels[:, :length] = seqs
    labels[np.arange(n), lengths] = END
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=0
        ),
    )
    model.fit(
        {"source": seqs.astype("int32"), "target": target},
        labels,
        batch_size=64,
        epochs=4,
        verbose=0,
    )
    return model


@pytest.mark.parametrize(
    "overrides, batch, pad",
    [
        (dict(), 3, True),
        (dict(share_embeddings=True, tie_output=True, pre_norm=True), 1, False),
        (dict(tie_output=True, num_decoder_layers=3), 4, True),
    ],
)
def test_cached_greedy_matches_uncached_on_random_models(overrides, batch, pad):
    model = tiny_model(7, **overrides)
    source = random_sources(1, batch, 6, pad=pad)
    cached, cached_scores = run(model, source, max_length=8)
    reference, reference_scores = run(model, source, max_length=8, use_cache=False)
    np.testing.assert_array_equal(cached, reference)
    np.testing.assert_allclose(cached_scores, reference_scores, rtol=1e-5, atol=1e-5)
    _, steps = teacher_forced(model, source, cached)
    np.testing.assert_allclose(cached_scores, steps.sum(1), rtol=1e-4, atol=1e-4)


def test_trained_greedy_cached_uncached_and_teacher_forced_score(trained):
    source = random_sources(2, 8, 8)
    cached, scores = run(trained, source, max_length=10)
    reference, reference_scores = run(trained, source, max_length=10, use_cache=False)
    np.testing.assert_array_equal(cached, reference)
    np.testing.assert_allclose(scores, reference_scores, rtol=1e-5, atol=1e-5)
    # The model learnt something: most rows end, most rows copy a prefix.
    assert (cached == END).any(axis=1).mean() >= 0.5
    assert np.mean(cached[:, 0] == source[:, 0]) >= 0.5
    logits, steps = teacher_forced(trained, source, cached)
    np.testing.assert_allclose(scores, steps.sum(1), rtol=1e-4, atol=1e-4)
    # Greedy: each token is the argmax (padding excluded) of its step.
    logits[..., 0] = -np.inf
    valid = cached != 0
    np.testing.assert_array_equal(logits.argmax(-1)[valid], cached[valid])


def test_prefix_padding_does_not_change_current_logits(trained):
    """The uncached reference relies on causality: 0s after t are harmless."""
    source = random_sources(3, 2, 7)
    prefix = np.array([[START, 5, 6, 7], [START, 9, 3, 11]], "int32")
    exact = to_numpy(trained({"source": source, "target": prefix}))[:, -1]
    padded = np.concatenate([prefix, np.zeros((2, 6), "int32")], axis=1)
    at_t = to_numpy(trained({"source": source, "target": padded}))[:, 3]
    np.testing.assert_allclose(at_t, exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["trained", "random"])
def test_beam_size_one_equals_greedy(which, trained):
    model = trained if which == "trained" else tiny_model(11)
    source = random_sources(4, 6, 7)
    greedy, greedy_scores = run(model, source, max_length=10)
    beam, beam_scores = run(
        model, source, max_length=10, method="beam", beam_size=1, length_penalty=0.0
    )
    np.testing.assert_array_equal(beam, greedy)
    np.testing.assert_allclose(beam_scores, greedy_scores, rtol=1e-5, atol=1e-5)


def beam_raw_and_check_score(model, source, tokens, scores, alpha):
    """Teacher-forced raw log-probs; checks the returned normalised score."""
    _, steps = teacher_forced(model, source, tokens)
    raw = steps.sum(1)
    lengths = (tokens != 0).sum(1)
    penalty = to_numpy(length_penalty(lengths, alpha))
    np.testing.assert_allclose(scores, raw / penalty, rtol=1e-4, atol=1e-4)
    return raw


def test_beam_search_beats_greedy_and_scores_match(trained):
    """On some rows greedy is suboptimal and beam search finds better."""
    improved = 0
    for model, seed in ((trained, 5), (tiny_model(3), 6)):
        source = random_sources(seed, 16, 8)
        greedy, _ = run(model, source, max_length=10)
        _, greedy_steps = teacher_forced(model, source, greedy)
        greedy_raw = greedy_steps.sum(1)
        beam, scores = run(
            model, source, max_length=10, method="beam", beam_size=4,
            length_penalty=0.0,
        )
        beam_raw = beam_raw_and_check_score(model, source, beam, scores, 0.0)
        improved += int(np.sum(beam_raw > greedy_raw + 1e-3))
    assert improved > 0


def test_beam_search_with_length_penalty_cached_matches_uncached(trained):
    source = random_sources(8, 5, 8)
    cached, scores = run(trained, source, max_length=10, method="beam", beam_size=3)
    reference, reference_scores = run(
        trained, source, max_length=10, method="beam", beam_size=3, use_cache=False
    )
    np.testing.assert_array_equal(cached, reference)
    np.testing.assert_allclose(scores, reference_scores, rtol=1e-5, atol=1e-5)
    beam_raw_and_check_score(trained, source, cached, scores, 0.6)


def sampled_steps(model, source, tokens, temperature):
    """Teacher-forced probabilities (padding excluded, tempered) per step."""
    logits, steps = teacher_forced(model, source, tokens)
    logits = logits / temperature
    logits[..., 0] = -np.inf
    probs = np.exp(log_softmax(logits))
    chosen = np.take_along_axis(probs, tokens[..., None], -1)[..., 0]
    return probs, chosen, steps


def test_top_k_emits_only_top_k_tokens():
    model = tiny_model(5)
    source = random_sources(9, 8, 6)
    tokens, scores = run(
        model, source, max_length=8, method="sample", top_k=3, temperature=2.0,
        seed=1,
    )
    probs, chosen, steps = sampled_steps(model, source, tokens, 2.0)
    valid = tokens != 0
    # Rank of the emitted token among the tempered probabilities.
    rank = (probs > chosen[..., None] * (1 + 1e-5)).sum(-1)
    assert np.all(rank[valid] < 3)
    assert np.any(rank[valid] > 0)  # it samples, it is not greedy
    np.testing.assert_allclose(scores, steps.sum(1), rtol=1e-4, atol=1e-4)


def test_top_p_emits_only_nucleus_tokens():
    model = tiny_model(5)
    source = random_sources(9, 8, 6)
    tokens, scores = run(
        model, source, max_length=8, method="sample", top_p=0.6, temperature=1.5,
        seed=2,
    )
    probs, chosen, steps = sampled_steps(model, source, tokens, 1.5)
    valid = tokens != 0
    # Mass of the tokens more likely than the emitted one must be < top_p.
    preceding = np.where(probs > chosen[..., None], probs, 0.0).sum(-1)
    assert np.all(preceding[valid] < 0.6 + 1e-4)
    assert np.any(preceding[valid] > 0)
    np.testing.assert_allclose(scores, steps.sum(1), rtol=1e-4, atol=1e-4)


def test_same_seed_same_samples_different_seed_different_samples():
    model = tiny_model(5)
    source = random_sources(10, 6, 6)
    options = dict(max_length=8, method="sample", temperature=1.5)
    first, first_scores = run(model, source, seed=42, **options)
    again, again_scores = run(model, source, seed=42, **options)
    other, _ = run(model, source, seed=43, **options)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_scores, again_scores)
    assert not np.array_equal(first, other)


def test_top_k_one_is_greedy():
    model = tiny_model(5)
    source = random_sources(11, 4, 6)
    greedy, greedy_scores = run(model, source, max_length=8)
    sampled, scores = run(model, source, max_length=8, method="sample", top_k=1)
    np.testing.assert_array_equal(sampled, greedy)
    np.testing.assert_allclose(scores, greedy_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        dict(method="greedy"),
        dict(method="beam", beam_size=3),
        dict(method="sample", top_k=5, top_p=0.9, seed=3),
    ],
    ids=["greedy", "beam", "sample"],
)
def test_compiled_matches_eager(options, trained):
    source = random_sources(12, 4, 8)
    options = dict(options, max_length=10, start_id=START, end_id=END)
    eager_tokens, eager_scores = generate(trained, source, **options)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(
            lambda ids: generate(trained, ids, **options), jit_compile=True
        )
    else:
        compiled = make_generate_fn(trained, **options)  # jax.jit
    tokens, scores = compiled(source)
    np.testing.assert_array_equal(to_numpy(tokens), to_numpy(eager_tokens))
    np.testing.assert_allclose(
        to_numpy(scores), to_numpy(eager_scores), rtol=1e-4, atol=1e-4
    )


def test_make_generate_fn_draws_new_samples_each_call():
    model = tiny_model(5)
    source = random_sources(13, 6, 6)
    sample = make_generate_fn(
        model, max_length=8, start_id=START, end_id=END, method="sample",
        temperature=1.5,
    )
    first = to_numpy(sample(source)[0])
    second = to_numpy(sample(source)[0])
    assert_well_formed(first, 8)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(method="nope"), "unknown method"),
        (dict(max_length=17), "max_length"),
        (dict(start_id=0), "start_id"),
        (dict(end_id=VOCAB), "end_id"),
        (dict(method="beam", beam_size=0), "beam_size"),
        (dict(method="sample", temperature=0.0), "temperature"),
        (dict(method="sample", top_p=1.5), "top_p"),
    ],
)
def test_invalid_arguments(options, message):
    model = tiny_model(1)
    options = dict(dict(max_length=8, start_id=START, end_id=END), **options)
    with pytest.raises(ValueError, match=message):
        generate(model, random_sources(0, 1, 4), **options)
