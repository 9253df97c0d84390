import numpy as np
import pytest
from support.numerics import to_numpy
from support.references import reference_attention

from keras_tfm.layers import scaled_dot_product_attention


def random_qkv(seed, b=2, tq=5, tk=7, h=3, d=8):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, tq, h, d)).astype("float32")
    k = rng.normal(size=(b, tk, h, d)).astype("float32")
    v = rng.normal(size=(b, tk, h, d)).astype("float32")
    return q, k, v


@pytest.mark.parametrize("use_fused", [True, False])
def test_unmasked_matches_float64_reference(use_fused):
    q, k, v = random_qkv(0)
    got = to_numpy(scaled_dot_product_attention(q, k, v, use_fused=use_fused))
    np.testing.assert_allclose(got, reference_attention(q, k, v)[0], atol=1e-5)


@pytest.mark.parametrize("use_fused", [True, False])
def test_masked_matches_reference_and_fully_masked_rows_are_zero(use_fused):
    q, k, v = random_qkv(1)
    rng = np.random.default_rng(2)
    mask = rng.random((2, 3, 5, 7)) > 0.4
    mask[0, 1, 2, :] = False  # one fully masked query row
    mask[1, :, 4, :] = False
    got = to_numpy(
        scaled_dot_product_attention(q, k, v, mask=mask, use_fused=use_fused)
    )
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference_attention(q, k, v, mask)[0], atol=1e-5)
    np.testing.assert_array_equal(got[1, 4], 0.0)


def test_fused_and_explicit_paths_agree_with_broadcast_mask():
    q, k, v = random_qkv(3, tq=6, tk=6)
    causal = np.tril(np.ones((6, 6), bool))[None, None]
    fused = to_numpy(scaled_dot_product_attention(q, k, v, mask=causal, use_fused=True))
    explicit, weights = scaled_dot_product_attention(
        q, k, v, mask=causal, use_fused=False, return_attention_scores=True
    )
    np.testing.assert_allclose(fused, to_numpy(explicit), atol=1e-6)
    weights = to_numpy(weights)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[..., ~causal[0, 0]] == 0)


def test_single_head_rank_three_inputs():
    q, k, v = random_qkv(4, h=1)
    mask = np.random.default_rng(5).random((2, 5, 7)) > 0.3
    got = to_numpy(
        scaled_dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0], mask=mask)
    )
    expected = reference_attention(q, k, v, mask[:, None])[0][:, :, 0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_half_precision_fully_masked_rows_are_finite():
    q, k, v = (a.astype("float16") for a in random_qkv(6))
    mask = np.zeros((2, 1, 5, 7), bool)
    mask[:, :, :3, :2] = True
    for use_fused in (True, False):
        got = to_numpy(
            scaled_dot_product_attention(q, k, v, mask=mask, use_fused=use_fused)
        )
        assert np.all(np.isfinite(got.astype("float32")))
        np.testing.assert_array_equal(got[:, 3:], 0)
