"""Beam search's `early_stopping`: the rule, and its effect on a model."""

import keras
import numpy as np
import pytest
from support.numerics import to_numpy

import keras_tfm.decoding.decoder_step as decoder_step_module
from keras_tfm import DecodingOptions, TransformerConfig, build_transformer
from keras_tfm.decoding.beam_search import _Search, length_penalty
from keras_tfm.decoding.generation import generate

VOCAB = 20
START, END = 2, 3
MAX_LENGTH = 12


def test_done_rule():
    search = _Search(None, 10, END, VOCAB, 2, 1.0, 1, None, early_stopping=True)
    exact = _Search(None, 10, END, VOCAB, 2, 1.0, 1, None, early_stopping=False)
    bound = float(to_numpy(length_penalty(10, 1.0)))
    # Three examples, each with one finished hypothesis scoring -2:
    # 0: a live beam could still reach -1.5 > -2; its best candidate ended.
    # 1: the same live beam; its best candidate has not ended.
    # 2: no live beam can beat -2 any more.
    alive = np.array([[-1.5 * bound, -9.0]] * 2 + [[-3.0 * bound, -9.0]], "float32")
    finished = np.array([[-2.0, -1e9]] * 3, "float32")
    flags = np.array([[True, False]] * 3)
    top_ended = np.array([True, False, False])
    beams = (None, alive, None, finished, flags, top_ended)
    np.testing.assert_array_equal(to_numpy(search.done(*beams)), [True, False, True])
    np.testing.assert_array_equal(to_numpy(exact.done(*beams)), [False, False, True])
    # Nothing finished: not done, whatever ended.
    beams = (None, alive, None, finished, np.zeros((3, 2), bool), top_ended)
    np.testing.assert_array_equal(to_numpy(search.done(*beams)), [False] * 3)


def end_prone_model(seed):
    keras.utils.set_random_seed(seed)
    config = TransformerConfig.preset(
        "tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, dropout=0.0, max_length=16
    )
    model = build_transformer(config)
    # Random weights rarely choose the end token: favour it, so that
    # hypotheses end at various lengths.
    bias = to_numpy(model.output_logits.bias)
    bias[END] += 1.0
    model.output_logits.bias.assign(bias)
    return model


@pytest.fixture(scope="module")
def model():
    return end_prone_model(11)


def sources():
    rng = np.random.default_rng(5)
    ids = rng.integers(4, VOCAB, (16, 6)).astype("int32")
    ids[:, -1] = END
    return ids


def decode(model, early_stopping, rows=None, alpha=1.0, **kwargs):
    options = DecodingOptions(
        beam_size=4, length_penalty=alpha, max_length=MAX_LENGTH,
        early_stopping=early_stopping,
    )  # fmt: skip
    source = sources() if rows is None else sources()[rows]
    tokens, scores = generate(model, source, options, start_id=START, **kwargs)
    return to_numpy(tokens), to_numpy(scores)


def teacher_forced_scores(model, tokens, alpha):
    """Normalised scores of `tokens` from the Keras model on the prefix."""
    target = np.concatenate([np.full((len(tokens), 1), START), tokens[:, :-1]], 1)
    logits = to_numpy(
        model.predict_on_batch({"source": sources(), "target": target.astype("int32")})
    ).astype("float64")
    logits[..., 0] = -np.inf  # padding is never generated
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, tokens[..., None], -1)[..., 0]
    raw = np.where(tokens != 0, picked, 0.0).sum(1)
    lengths = (tokens != 0).sum(1)
    return raw / ((5.0 + lengths) / 6.0) ** alpha


def test_early_stopping_stops_sooner_and_never_scores_higher(model, monkeypatch):
    steps = []
    make_step = decoder_step_module.fused_decoder_step

    def counting(*args, **kwargs):
        step, state = make_step(*args, **kwargs)
        steps.append(0)

        def counted(*step_args):
            steps[-1] += 1
            return step(*step_args)

        return counted, state

    monkeypatch.setattr(decoder_step_module, "fused_decoder_step", counting)
    if keras.config.backend() == "tensorflow":
        # Eager TensorFlow calls the step once per decoding step (JAX traces
        # it once). Sentence by sentence, so that each call's steps are its
        # sentence's.
        for early_stopping in (False, True):
            for row in range(len(sources())):
                decode(model, early_stopping, rows=[row], jit_compile=False)
        exact_steps, early_steps = sum(steps[:16]), sum(steps[16:])
        assert early_steps <= 0.85 * exact_steps, (exact_steps, early_steps)
    exact_tokens, exact_scores = decode(model, False, jit_compile=False)
    early_tokens, early_scores = decode(model, True, jit_compile=False)
    # It stops on the exact search's path: its best finished hypothesis can
    # only be overtaken later, never be better.
    assert np.all(early_scores <= exact_scores + 1e-5)
    np.testing.assert_allclose(
        early_scores, teacher_forced_scores(model, early_tokens, 1.0), atol=1e-4
    )
    # It stops only with a finished hypothesis: a sentence that ends without
    # one ran the whole search, as the exact rule does.
    unfinished = (early_tokens == END).sum(1) == 0
    np.testing.assert_array_equal(early_tokens[unfinished], exact_tokens[unfinished])


def test_early_stopping_compiled_matches_dynamic():
    """Compiled, a done sentence stays in the batch until all are done; its
    result must stay what it was when it was done (with this model and
    penalty, two sentences would otherwise change)."""
    if keras.config.backend() != "tensorflow":
        pytest.skip("dynamic shapes are for TensorFlow")
    model = end_prone_model(3)
    dynamic = decode(model, True, alpha=2.0, jit_compile=False)
    compiled = decode(model, True, alpha=2.0, jit_compile=True)
    np.testing.assert_array_equal(dynamic[0], compiled[0])
    np.testing.assert_allclose(dynamic[1], compiled[1], atol=1e-5)
