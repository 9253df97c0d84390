"""The fused cached step against the Keras model run on the whole prefix."""

import keras
import numpy as np
import pytest
from support.numerics import to_numpy

from keras_tfm import TransformerConfig, build_transformer
from keras_tfm.constants import MASK_FILL_VALUE, START_ID
from keras_tfm.decoding.fused_step import DecoderStepWeights, fused_decoder_step

VOCAB = 23
STEPS = 7


def model_with(seed, **overrides):
    keras.utils.set_random_seed(seed)
    options = dict(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, dropout=0.0)
    options.update(max_length=16, **overrides)
    return build_transformer(TransformerConfig.preset("tiny", **options))


def teacher_forced_logits(model, source, prefix):
    inputs = {"source": source, "target": prefix}
    return to_numpy(model.predict_on_batch(inputs))


def step_logits(model, source, sequences, repeat, dynamic, weights=None):
    step, state = fused_decoder_step(
        model, source, STEPS, repeat, dynamic, weights=weights
    )
    found = []
    for t in range(STEPS):
        logits, state = step(sequences, t, state)
        found.append(to_numpy(logits))
    return np.stack(found, axis=1)


@pytest.mark.parametrize("dynamic", [True, False], ids=["growing", "static"])
@pytest.mark.parametrize(
    "overrides, repeat",
    [
        (dict(), 1),
        (dict(share_embeddings=True, tie_output=True), 3),
        (dict(pre_norm=True, activation="gelu", num_decoder_layers=3), 2),
    ],
    ids=["untied-greedy", "shared-tied-3beams", "prenorm-gelu-2beams"],
)
def test_step_logits_match_the_model_on_the_prefix(overrides, repeat, dynamic):
    if dynamic and keras.config.backend() != "tensorflow":
        pytest.skip("growing caches are for TensorFlow")
    model = model_with(3, **overrides)
    rng = np.random.default_rng(0)
    source = rng.integers(4, VOCAB, (2, 6)).astype("int32")
    source[1, 3:] = 0  # padding the decoder must not attend to
    # Every beam row its own tokens: caches are per row, encoder keys per
    # sentence.
    tokens = rng.integers(4, VOCAB, (2 * repeat, STEPS))
    sequences = np.concatenate(
        [np.full((2 * repeat, 1), START_ID), tokens], axis=1
    ).astype("int32")
    found = step_logits(model, source, sequences, repeat, dynamic)
    expected = teacher_forced_logits(
        model, np.repeat(source, repeat, axis=0), sequences[:, :STEPS]
    )
    np.testing.assert_allclose(found[..., 1:], expected[..., 1:], atol=2e-5, rtol=1e-4)
    # Padding is excluded by the step itself.
    np.testing.assert_array_equal(found[..., 0], MASK_FILL_VALUE)


def test_precomputed_weights_are_those_of_the_call():
    model = model_with(5, share_embeddings=True, tie_output=True)
    source = np.array([[5, 6, 7, 3]], "int32")
    sequences = np.array([[START_ID, 4, 9, 11, 5, 6, 7, 8]], "int32")
    weights = DecoderStepWeights(model, STEPS)
    copies = weights.map(lambda x: keras.ops.convert_to_tensor(x) * 1)
    assert len(weights.tensors()) == len(copies.tensors())
    np.testing.assert_allclose(
        step_logits(model, source, sequences, 1, False, weights=copies),
        step_logits(model, source, sequences, 1, False),
        rtol=1e-6,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="step weights hold 3 positions"):
        fused_decoder_step(model, source, STEPS, 1, False, DecoderStepWeights(model, 3))
