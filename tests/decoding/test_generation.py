"""Tests for `generate`: cached vs uncached decoding, search, sampling.

Every check is made against an independent teacher-forced pass of the
functional model over the returned tokens, in numpy. Under JAX each eager
`generate` call compiles its loop, so the tests share models, inputs and
greedy results (module fixtures) and keep one input shape per model.
"""

import itertools

import keras
import numpy as np
import pytest
from support.numerics import to_numpy

from keras_tfm import TransformerConfig, build_transformer
from keras_tfm.decoding.generation import generate, length_penalty, make_generate_fn

START, END = 1, 2
VOCAB = 20
MAX_LENGTH = 10
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


def forward(model, source, target):
    """Logits of the functional model (jitted under JAX: eager JAX compiles
    every op for every new shape)."""
    inputs = {"source": source, "target": target}
    if BACKEND == "jax":
        return to_numpy(model.predict_on_batch(inputs))
    return to_numpy(model(inputs))


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def teacher_forced(model, source, tokens):
    """Feeds `[START] + tokens[:-1]` to the model.

    Returns the per-step logits `(batch, steps, vocab)` and the
    log-probabilities of `tokens` (0 where tokens are 0, after the end),
    normalised over every id but padding (which is never generated).
    """
    tokens = np.asarray(tokens)
    target = np.concatenate(
        [np.full((len(tokens), 1), START, "int32"), tokens[:, :-1]], axis=1
    )
    logits = forward(model, source, target)
    without_padding = logits.copy()
    without_padding[..., 0] = -np.inf
    log_probs = log_softmax(without_padding)
    picked = np.take_along_axis(log_probs, tokens[..., None], -1)[..., 0]
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
    kwargs.setdefault("max_length", MAX_LENGTH)
    # Greedy unless asked otherwise (generate's own default is beam search).
    kwargs.setdefault("method", "greedy")
    tokens, scores = generate(model, source, **kwargs)
    tokens, scores = to_numpy(tokens), to_numpy(scores)
    assert scores.dtype == np.float32 and scores.shape == (len(source),)
    assert_well_formed(tokens, kwargs["max_length"])
    return tokens, scores


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained for a few seconds to copy its source.

    One encoder and one decoder layer: tracing the training step dominates
    the cost and scales with depth. Three epochs leave it imperfect.
    """
    model = tiny_model(0, num_encoder_layers=1, num_decoder_layers=1)
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
        epochs=3,
        verbose=0,
    )
    return model


@pytest.fixture(scope="module")
def models(trained):
    return {"random": tiny_model(7), "trained": trained}


@pytest.fixture(scope="module")
def greedy_runs(models):
    """name -> (source, cached greedy tokens, scores), source `(16, 8)`."""
    runs = {}
    for index, (name, model) in enumerate(sorted(models.items())):
        source = random_sources(index, 16, 8)
        runs[name] = (source,) + run(model, source)
    return runs


@pytest.mark.parametrize("name", ["random", "trained"])
def test_greedy_cached_matches_uncached_and_teacher_forcing(name, models, greedy_runs):
    model = models[name]
    source, tokens, scores = greedy_runs[name]
    reference, reference_scores = run(model, source, use_cache=False)
    np.testing.assert_array_equal(tokens, reference)
    np.testing.assert_allclose(scores, reference_scores, rtol=1e-5, atol=1e-5)
    logits, steps = teacher_forced(model, source, tokens)
    np.testing.assert_allclose(scores, steps.sum(1), rtol=1e-4, atol=1e-4)
    # Each token is the argmax (padding excluded) of its step.
    logits[..., 0] = -np.inf
    valid = tokens != 0
    np.testing.assert_array_equal(logits.argmax(-1)[valid], tokens[valid])
    if name == "trained":
        # Not degenerate: most rows end, most rows start copying.
        assert (tokens == END).any(axis=1).mean() >= 0.5
        assert np.mean(tokens[:, 0] == source[:, 0]) >= 0.5


@pytest.mark.parametrize(
    "overrides, batch, pad",
    [
        (dict(share_embeddings=True, tie_output=True, pre_norm=True), 1, False),
        (dict(tie_output=True, num_decoder_layers=3), 4, True),
    ],
    ids=["shared-tied-prenorm-batch1", "tied-3layers-padded"],
)
def test_cached_greedy_matches_uncached_on_model_variants(overrides, batch, pad):
    model = tiny_model(7, **overrides)
    source = random_sources(1, batch, 6, pad=pad)
    cached, cached_scores = run(model, source, max_length=8)
    reference, reference_scores = run(model, source, max_length=8, use_cache=False)
    np.testing.assert_array_equal(cached, reference)
    np.testing.assert_allclose(cached_scores, reference_scores, rtol=1e-5, atol=1e-5)
    _, steps = teacher_forced(model, source, cached)
    np.testing.assert_allclose(cached_scores, steps.sum(1), rtol=1e-4, atol=1e-4)


def test_prefix_padding_does_not_change_current_logits(trained):
    """The uncached reference relies on causality: 0s after t are harmless."""
    source = random_sources(3, 2, 7)
    prefix = np.array([[START, 5, 6, 7], [START, 9, 3, 11]], "int32")
    exact = forward(trained, source, prefix)[:, -1]
    padded = np.concatenate([prefix, np.zeros((2, 6), "int32")], axis=1)
    at_t = forward(trained, source, padded)[:, 3]
    np.testing.assert_allclose(at_t, exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["random", "trained"])
def test_beam_size_one_equals_greedy(name, models, greedy_runs):
    source, greedy, greedy_scores = greedy_runs[name]
    beam, beam_scores = run(
        models[name], source, method="beam", beam_size=1, length_penalty=0.0
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


def test_beam_search_beats_greedy_and_scores_match(models, greedy_runs):
    """On some rows greedy is suboptimal and beam search finds better."""
    improved = 0
    for name, model in models.items():
        source, greedy, _ = greedy_runs[name]
        _, greedy_steps = teacher_forced(model, source, greedy)
        greedy_raw = greedy_steps.sum(1)
        beam, scores = run(model, source, method="beam", length_penalty=0.0)
        beam_raw = beam_raw_and_check_score(model, source, beam, scores, 0.0)
        improved += int(np.sum(beam_raw > greedy_raw + 1e-3))
    assert improved > 0


def test_beam_search_with_length_penalty_cached_matches_uncached(trained, greedy_runs):
    source = greedy_runs["trained"][0]
    cached, scores = run(trained, source, method="beam", beam_size=3)
    reference, reference_scores = run(
        trained, source, method="beam", beam_size=3, use_cache=False
    )
    np.testing.assert_array_equal(cached, reference)
    np.testing.assert_allclose(scores, reference_scores, rtol=1e-5, atol=1e-5)
    beam_raw_and_check_score(trained, source, cached, scores, 0.6)


def exhaustive_search(model, source, max_length, alpha):
    """Every finished hypothesis of every source row, scored by teacher forcing.

    A hypothesis is non-end, non-padding tokens followed by END, at most
    `max_length` long. Returns `(hypotheses (n, max_length), normalized
    scores (rows, n))` with the GNMT length penalty of exponent `alpha`.
    """
    vocab = model.get_layer("output_logits").vocab_size
    others = [t for t in range(1, vocab) if t != END]
    hypotheses = [
        list(prefix) + [END]
        for length in range(1, max_length + 1)
        for prefix in itertools.product(others, repeat=length - 1)
    ]
    tokens = np.zeros((len(hypotheses), max_length), "int32")
    for row, hypothesis in enumerate(hypotheses):
        tokens[row, : len(hypothesis)] = hypothesis
    lengths = np.array([len(h) for h in hypotheses], np.float64)
    penalty = ((5.0 + lengths) / 6.0) ** alpha
    scores = []
    for row in source:
        repeated = np.repeat(row[None], len(hypotheses), axis=0)
        _, steps = teacher_forced(model, repeated, tokens)
        scores.append(steps.astype(np.float64).sum(1) / penalty)
    return tokens, np.array(scores)


def numpy_initialised_model(seed):
    """A tiny model with 5 target ids whose weights come from NumPy, so that
    it is the same model under every backend."""
    model = tiny_model(0, tgt_vocab_size=5)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "gamma" in variable.path:
            value = 1.0 + 0.1 * rng.normal(size=shape)
        elif len(shape) == 1 or "bias" in variable.path:
            value = 0.1 * rng.normal(size=shape)
        else:
            value = rng.normal(size=shape) / np.sqrt(shape[0])
        variable.assign(value.astype("float32"))
    # Sharper output distributions, so that scores are far apart.
    output = model.get_layer("output_logits")
    output.kernel.assign(2.0 * keras.ops.convert_to_numpy(output.kernel))
    return model


def test_wide_beam_search_finds_the_exhaustive_best():
    """A beam wider than every candidate set is exact: for each source and
    length penalty it must return the best of all 121 finished hypotheses
    (4 target ids, up to 5 tokens), found here by scoring every one of them
    with a teacher-forced pass."""
    model = numpy_initialised_model(1)
    source = random_sources(2, 6, 5)
    max_length = 5
    best_lengths = set()
    for alpha in (0.0, 0.6, 1.5):
        hypotheses, scores = exhaustive_search(model, source, max_length, alpha)
        best = scores.argmax(1)
        ranked = np.sort(scores, axis=1)
        # The best is clear of the runner-up by more than rounding.
        assert np.all(ranked[:, -1] - ranked[:, -2] > 1e-3)
        # At most 3**4 live beams x 5 ids = 405 candidates at the last step.
        tokens, beam_scores = run(
            model, source, method="beam", beam_size=405, length_penalty=alpha,
            max_length=max_length,
        )  # fmt: skip
        np.testing.assert_array_equal(tokens, hypotheses[best], err_msg=str(alpha))
        np.testing.assert_allclose(beam_scores, ranked[:, -1], rtol=1e-4, atol=1e-4)
        best_lengths.update((hypotheses[best] != 0).sum(1).tolist())
    # The penalty changes which hypothesis wins: lengths 1 to 5 are covered.
    assert len(best_lengths) >= 2


def sampled_steps(model, source, tokens, temperature):
    """Teacher-forced probabilities (padding excluded, tempered) per step."""
    logits, steps = teacher_forced(model, source, tokens)
    logits = logits / temperature
    logits[..., 0] = -np.inf
    probs = np.exp(log_softmax(logits))
    chosen = np.take_along_axis(probs, tokens[..., None], -1)[..., 0]
    return probs, chosen, steps


def test_top_k_emits_only_top_k_tokens(models, greedy_runs):
    model, source = models["random"], greedy_runs["random"][0]
    tokens, scores = run(
        model, source, method="sample", top_k=3, temperature=2.0, seed=1
    )
    probs, chosen, steps = sampled_steps(model, source, tokens, 2.0)
    valid = tokens != 0
    # Rank of the emitted token among the tempered probabilities.
    rank = (probs > chosen[..., None] * (1 + 1e-5)).sum(-1)
    assert np.all(rank[valid] < 3)
    assert np.any(rank[valid] > 0)  # it samples, it is not greedy
    # Scores: log-probabilities under the unmodified model.
    np.testing.assert_allclose(scores, steps.sum(1), rtol=1e-4, atol=1e-4)


def test_top_p_emits_only_nucleus_tokens(models, greedy_runs):
    model, source = models["random"], greedy_runs["random"][0]
    tokens, scores = run(
        model, source, method="sample", top_p=0.6, temperature=1.5, seed=2
    )
    probs, chosen, steps = sampled_steps(model, source, tokens, 1.5)
    valid = tokens != 0
    # The mass of the tokens more likely than the emitted one is < top_p.
    preceding = np.where(probs > chosen[..., None], probs, 0.0).sum(-1)
    assert np.all(preceding[valid] < 0.6 + 1e-4)
    assert np.any(preceding[valid] > 0)
    np.testing.assert_allclose(scores, steps.sum(1), rtol=1e-4, atol=1e-4)


def test_same_seed_same_samples_different_seed_different_samples(models, greedy_runs):
    model, source = models["random"], greedy_runs["random"][0]
    options = dict(method="sample", temperature=1.5)
    first, first_scores = run(model, source, seed=42, **options)
    again, again_scores = run(model, source, seed=42, **options)
    other, _ = run(model, source, seed=43, **options)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_scores, again_scores)
    assert not np.array_equal(first, other)


def test_top_k_one_is_greedy(models, greedy_runs):
    source, greedy, greedy_scores = greedy_runs["random"]
    sampled, scores = run(models["random"], source, method="sample", top_k=1)
    np.testing.assert_array_equal(sampled, greedy)
    np.testing.assert_allclose(scores, greedy_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_compiled_matches_eager(method, trained, greedy_runs):
    """tf.function(jit_compile=True) on TensorFlow, jax.jit on JAX."""
    source, eager_tokens, eager_scores = greedy_runs["trained"]
    options = dict(
        method=method,
        beam_size=3,
        max_length=MAX_LENGTH,
        start_id=START,
        end_id=END,
    )
    if method == "beam":
        eager_tokens, eager_scores = run(trained, source, **options)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(
            lambda ids: generate(trained, ids, **options),
            jit_compile=True,
            autograph=False,
        )
    else:
        compiled = make_generate_fn(trained, **options)  # jax.jit
    tokens, scores = compiled(source)
    np.testing.assert_array_equal(to_numpy(tokens), eager_tokens)
    np.testing.assert_allclose(to_numpy(scores), eager_scores, rtol=1e-4, atol=1e-4)


def test_compiled_sampling(models, greedy_runs):
    """Int seed: the same samples at every call (and, on JAX, the eager
    ones; TensorFlow's stateless RNG differs under XLA). No seed: a fresh
    SeedGenerator, new samples at every call."""
    model, source = models["random"], greedy_runs["random"][0]
    options = dict(
        max_length=MAX_LENGTH,
        start_id=START,
        end_id=END,
        method="sample",
        temperature=1.5,
        top_k=8,
        top_p=0.95,
    )
    seeded = make_generate_fn(model, seed=3, **options)
    tokens, scores = (to_numpy(x) for x in seeded(source))
    np.testing.assert_array_equal(to_numpy(seeded(source)[0]), tokens)
    assert_well_formed(tokens, MAX_LENGTH)
    _, steps = teacher_forced(model, source, tokens)
    np.testing.assert_allclose(scores, steps.sum(1), rtol=1e-4, atol=1e-4)
    if BACKEND == "jax":
        eager, _ = run(model, source, seed=3, **options)
        np.testing.assert_array_equal(tokens, eager)
    unseeded = make_generate_fn(model, **options)
    first = to_numpy(unseeded(source)[0])
    second = to_numpy(unseeded(source)[0])
    assert_well_formed(first, MAX_LENGTH)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(method="nope"), "method is unknown: 'nope'"),
        (dict(max_length=17), "max_length"),
        (dict(start_id=0), "start_id"),
        (dict(end_id=VOCAB), "end_id"),
        (dict(method="beam", beam_size=0), "beam_size"),
        (dict(method="beam", length_penalty=-1.0), "length_penalty"),
        (dict(method="sample", temperature=0.0), "temperature"),
        (dict(method="sample", top_k=0), "top_k"),
        (dict(method="sample", top_p=1.5), "top_p"),
        (dict(min_length=8), "min_length is 8: no room is left for the end token"),
        (dict(min_length=-1), "min_length"),
        (
            dict(method="greedy", n_best=2),
            "n_best is 2, more than the 1 hypotheses greedy",
        ),
        (dict(method="beam", beam_size=3, n_best=4), "n_best is 4"),
        (dict(method="beam", n_best=0), "n_best"),
    ],
)
def test_invalid_arguments(options, message, models):
    options = dict(dict(max_length=8, start_id=START, end_id=END), **options)
    with pytest.raises(ValueError, match=message):
        generate(models["random"], random_sources(0, 1, 4), **options)


def test_options_object_and_its_overrides(models):
    """`DecodingOptions` passed as one object decodes what the same settings
    given one by one decode; a field given by keyword overrides it."""
    from keras_tfm import DecodingOptions

    model, source = models["random"], random_sources(1, 3, 5)
    ids = dict(start_id=START, end_id=END)
    by_keywords = generate(
        model, source, method="beam", beam_size=3, max_length=8, **ids
    )
    options = DecodingOptions("beam", beam_size=3, max_length=8)
    as_object = generate(model, source, options, **ids)
    for got, expected in zip(as_object, by_keywords):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(expected))
    greedy = generate(model, source, method="greedy", max_length=8, **ids)
    overridden = generate(model, source, options, method="greedy", **ids)
    for got, expected in zip(overridden, greedy):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(expected))
    with pytest.raises(TypeError, match="not a keras_tfm Transformer"):
        plain = keras.Model(model.inputs, model.outputs)
        generate(plain, source, options, **ids)


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_dynamic_shapes_give_the_compiled_tokens(method, trained):
    """Caches that grow and sentences that leave the batch (eagerly, and in
    a TensorFlow graph with unknown shapes, as the SavedModel runs) decode
    what the compiled static-shape path decodes; an empty row decodes to
    nothing."""
    source = random_sources(21, 9, 6)
    source[4] = 0
    options = dict(
        start_id=START, end_id=END, max_length=MAX_LENGTH, method=method, beam_size=3
    )
    compiled, compiled_scores = (
        to_numpy(x) for x in generate(trained, source, **options)
    )
    assert np.all(compiled[4] == 0) and compiled_scores[4] == 0.0
    runs = [
        generate(trained, source, jit_compile=False, dynamic_shapes=True, **options)
    ]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        graph = tf.function(
            lambda ids: generate(
                trained, ids, jit_compile=False, dynamic_shapes=True, **options
            ),
            input_signature=[tf.TensorSpec([None, None], tf.int32)],
            autograph=False,
        )
        runs.append(graph(source))
    for tokens, scores in runs:
        np.testing.assert_array_equal(to_numpy(tokens), compiled)
        np.testing.assert_allclose(to_numpy(scores), compiled_scores, atol=1e-4)


def test_generate_compiles_once_per_settings_and_padded_shape(trained):
    from keras_tfm.decoding.compiled import _COMPILED

    options = dict(start_id=START, end_id=END, max_length=MAX_LENGTH, method="greedy")
    _COMPILED.pop(trained, None)
    three, four = random_sources(22, 3, 5), random_sources(23, 4, 7)
    first = to_numpy(generate(trained, three, **options)[0])
    to_numpy(generate(trained, four, **options)[0])
    # Both batches pad to 4 rows of 16 tokens: one function, one trace.
    (function,) = _COMPILED[trained].values()
    if BACKEND == "tensorflow":
        assert function.experimental_get_tracing_count() == 1
    generate(trained, three, **dict(options, method="beam"))
    assert len(_COMPILED[trained]) == 2
    # The padding changes nothing: the eager path decodes the same tokens.
    eager = to_numpy(generate(trained, three, jit_compile=False, **options)[0])
    np.testing.assert_array_equal(first, eager)
    assert first.shape == (3, MAX_LENGTH)


def test_padding_does_not_count_in_the_scores(trained):
    """A padding logit raised far above all others changes neither the
    tokens nor the scores: padding is outside the distribution searched."""
    source = random_sources(24, 4, 6)
    options = dict(method="greedy", max_length=MAX_LENGTH)
    tokens, scores = run(trained, source, **options)
    bias = trained.get_layer("output_logits").bias
    original = keras.ops.convert_to_numpy(bias)
    try:
        bias.assign(original + 40.0 * (np.arange(VOCAB) == 0))  # padding dominates
        for method in ("greedy", "beam"):
            raised, raised_scores = run(
                trained,
                source,
                **dict(options, method=method, beam_size=1, length_penalty=0),
            )
            np.testing.assert_array_equal(raised, tokens)
            np.testing.assert_allclose(raised_scores, scores, rtol=1e-5, atol=1e-5)
    finally:
        bias.assign(original)


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_min_length_forbids_the_end_token_early(method, trained):
    """Reference: the teacher-forced argmax with the end id (and padding)
    excluded at the first `min_length` steps; scores normalised as usual."""
    source = random_sources(25, 8, 5)
    min_length = 7
    plain, _ = run(trained, source, method="greedy")
    ends = (plain == END).argmax(1)
    assert np.any(ends < min_length)  # the constraint binds
    tokens, scores = run(
        trained, source, method=method, beam_size=1, length_penalty=0.0,
        min_length=min_length,
    )  # fmt: skip
    assert np.all((tokens[:, :min_length] != END) & (tokens[:, :min_length] != 0))
    logits, steps = teacher_forced(trained, source, tokens)
    logits[..., 0] = -np.inf
    logits[:, :min_length, END] = -np.inf
    valid = tokens != 0
    np.testing.assert_array_equal(logits.argmax(-1)[valid], tokens[valid])
    np.testing.assert_allclose(scores, steps.sum(1), rtol=1e-4, atol=1e-4)


def test_n_best_are_the_exhaustive_best():
    """With a beam wider than every candidate set, the n best hypotheses
    are the n best of all finished ones, in order, with their scores; the
    first equals the 1-best result."""
    model = numpy_initialised_model(1)
    source = random_sources(2, 6, 5)
    max_length, alpha, n = 5, 0.6, 3
    hypotheses, scores = exhaustive_search(model, source, max_length, alpha)
    order = np.argsort(-scores, axis=1)[:, :n]
    options = dict(
        method="beam", beam_size=405, length_penalty=alpha, max_length=max_length
    )
    outputs = generate(model, source, start_id=START, end_id=END, n_best=n, **options)
    tokens, beam_scores = (to_numpy(x) for x in outputs)
    assert tokens.shape == (6, n, max_length) and beam_scores.shape == (6, n)
    expected = np.take_along_axis(scores, order, axis=1)
    np.testing.assert_allclose(beam_scores, expected, rtol=1e-4, atol=1e-4)
    gaps = -np.diff(np.sort(scores, axis=1)[:, ::-1][:, : n + 1], axis=1)
    clear = gaps > 1e-3  # ranks whose hypothesis is unambiguous
    np.testing.assert_array_equal(tokens[clear], hypotheses[order][clear])
    assert clear.mean() > 0.8
    best, best_scores = run(model, source, **options)
    np.testing.assert_array_equal(tokens[:, 0], best)
    np.testing.assert_allclose(beam_scores[:, 0], best_scores, rtol=1e-5)


def test_n_best_of_a_narrow_beam(trained):
    """beam 3, n 3: distinct hypotheses, best first, each score its
    teacher-forced log-probability over the length penalty; greedy's n_best=1
    adds an axis."""
    source = random_sources(26, 5, 6)
    tokens, scores = (
        to_numpy(x)
        for x in generate(
            trained, source, start_id=START, end_id=END, max_length=MAX_LENGTH,
            beam_size=3, n_best=3,
        )
    )  # fmt: skip
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    for row in range(len(source)):
        assert len({tuple(hypothesis) for hypothesis in tokens[row]}) == 3
    for rank in range(3):
        assert_well_formed(tokens[:, rank], MAX_LENGTH)
        beam_raw_and_check_score(trained, source, tokens[:, rank], scores[:, rank], 0.6)
    greedy, greedy_scores = run(trained, source)
    one, one_scores = generate(
        trained, source, start_id=START, end_id=END, max_length=MAX_LENGTH,
        method="greedy", n_best=1,
    )  # fmt: skip
    np.testing.assert_array_equal(to_numpy(one)[:, 0], greedy)
    np.testing.assert_allclose(to_numpy(one_scores)[:, 0], greedy_scores, rtol=1e-6)


def test_append_source_end_and_default_ids(trained):
    """`append_source_end` decodes what sources with the end id written in
    NumPy decode (empty rows stay empty); start and end ids default to the
    tokenizers' reserved ids."""
    from keras_tfm.constants import END_ID, START_ID

    source = random_sources(27, 6, 5)
    source[2] = 0
    lengths = (source != 0).sum(1)
    with_end = np.zeros((6, 6), "int32")
    with_end[:, :5] = source
    with_end[np.arange(6), lengths] = np.where(lengths > 0, END_ID, 0)
    options = dict(method="greedy", max_length=MAX_LENGTH)
    expected = to_numpy(generate(trained, with_end, **options)[0])
    appended = to_numpy(generate(trained, source, append_source_end=True, **options)[0])
    np.testing.assert_array_equal(appended, expected)
    assert np.all(appended[2] == 0)
    explicit = generate(trained, with_end, start_id=START_ID, end_id=END_ID, **options)[
        0
    ]
    np.testing.assert_array_equal(to_numpy(explicit), expected)
