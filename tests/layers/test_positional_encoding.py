import numpy as np
import pytest
from support.numerics import assert_config_round_trip, to_numpy
from support.references import positional_encoding

from keras_tfm.layers import PositionalEncoding


@pytest.mark.parametrize("depth", [8, 64, 512, 7])
def test_matches_paper_formula(depth):
    layer = PositionalEncoding(max_length=300)
    zeros = np.zeros((1, 300, depth), "float32")
    got = to_numpy(layer(zeros))[0]
    # float32 angles near 300 rad carry ~3e-5 of rounding.
    np.testing.assert_allclose(got, positional_encoding(range(300), depth), atol=1e-4)


def test_adds_to_inputs_and_honours_start_index():
    layer = PositionalEncoding(max_length=64)
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    got = to_numpy(layer(x, start_index=11))
    expected = x + positional_encoding(range(11, 16), 16)[None]
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # Encoding one step at position t equals row t of the full encoding.
    full = to_numpy(layer(np.zeros((1, 20, 16), "float32")))
    step = to_numpy(layer(np.zeros((1, 1, 16), "float32"), start_index=13))
    np.testing.assert_allclose(step[0, 0], full[0, 13], atol=1e-6)


def test_rejects_sequences_longer_than_max_length():
    with pytest.raises(ValueError, match="max_length=4"):
        PositionalEncoding(max_length=4)(np.zeros((1, 5, 8), "float32"))


def test_config_round_trip():
    x = np.ones((1, 3, 8), "float32")
    assert_config_round_trip(PositionalEncoding(max_length=9), x)
