"""`decoding.top_k.top_k` against NumPy's stable sort."""

import numpy as np
import pytest
from support.numerics import to_numpy

from keras_tfm.decoding.top_k import top_k


def numpy_top_k(values, k):
    order = np.argsort(-values, axis=-1, kind="stable")[:, :k]
    return np.take_along_axis(values, order, axis=-1), order


@pytest.mark.parametrize(
    "rows, n, k, chunk",
    [
        (5, 8000, 8, 64),  # a Multi30k vocabulary, beam 4
        (3, 1000, 2, 16),  # not a multiple of the chunk: padded
        (2, 700, 8, 64),  # shorter than 4 * k * chunk: ops.top_k
        (1, 4096, 1, 8),
    ],
)
def test_top_k_matches_numpy(rows, n, k, chunk):
    rng = np.random.default_rng(n)
    values = rng.standard_normal((rows, n)).astype("float32")
    values[0, :3] = -1e9  # excluded ids, as a step's logits hold them
    values[-1, -5:] = values[-1].max() + np.arange(1, 6)  # the best at the end
    found, positions = top_k(values, k, chunk)
    expected, expected_positions = numpy_top_k(values, k)
    np.testing.assert_array_equal(to_numpy(found), expected)
    np.testing.assert_array_equal(to_numpy(positions), expected_positions)
    assert to_numpy(positions).dtype == np.int32


def test_all_best_values_in_one_chunk():
    # The k best all in chunk 3: the other chosen chunks hold none of them.
    values = np.zeros((1, 2048), "float32")
    values[0, 3 * 64 : 3 * 64 + 8] = np.arange(8, 0, -1)
    found, positions = top_k(values, 8, 64)
    np.testing.assert_array_equal(to_numpy(positions)[0], 3 * 64 + np.arange(8))
    np.testing.assert_array_equal(to_numpy(found)[0], np.arange(8, 0, -1))


def test_equal_values_lower_position_first():
    # Chunk 5 (max 10) and chunk 2 (max 9) each hold a 1; the third best is
    # the 1 at the lower position, as ops.top_k and a stable sort give.
    values = np.zeros((1, 1024), "float32")
    values[0, [5 * 64, 5 * 64 + 1, 2 * 64, 2 * 64 + 1]] = [10, 1, 9, 1]
    found, positions = top_k(values, 3, 64)
    np.testing.assert_array_equal(to_numpy(positions)[0], [320, 128, 129])
    np.testing.assert_array_equal(to_numpy(found)[0], [10, 9, 1])
