"""`BatchingOptions`: each bad field named, the edges and the defaults."""

import dataclasses

import pytest

from keras_tfm.data.options import BatchingOptions
from keras_tfm.errors import FieldError


@pytest.mark.parametrize(
    "values, field, problem",
    [
        ({}, "batch_size", "and batch_tokens: neither is set; give exactly one"),
        (
            dict(batch_size=8, batch_tokens=64),
            "batch_size",
            "and batch_tokens: both are set; give exactly one",
        ),
        (
            dict(batch_tokens=10, max_length=16),
            "batch_tokens",
            "(10) must be >= max_length (16): the longest pairs would fit in no batch",
        ),
        (dict(batch_size=0), "batch_size", "must be an integer >= 1, got 0"),
        (dict(batch_size=True), "batch_size", "must be an integer >= 1, got True"),
        (
            dict(batch_size=8, max_length=1),
            "max_length",
            "must be an integer >= 2, got 1",
        ),
        (
            dict(batch_size=8, shuffle_buffer=0),
            "shuffle_buffer",
            "must be an integer >= 1, got 0",
        ),
        (dict(batch_size=8, seed=-1), "seed", "must be an integer >= 0, got -1"),
        (
            dict(batch_size=8, shuffle="yes"),
            "shuffle",
            "must be True or False, got 'yes'",
        ),
        (dict(batch_size=8, cache=1), "cache", "must be True or False, got 1"),
        (
            dict(batch_size=8, sampling_alpha=1.0),
            "sampling_alpha",
            "must be in [0.0, 1.0), got 1.0",
        ),
        (
            dict(batch_size=8, sampling_alpha=-0.1),
            "sampling_alpha",
            "must be in [0.0, 1.0), got -0.1",
        ),
        (
            dict(batch_size=8, sampling_nbest_size=1),
            "sampling_nbest_size",
            "must be -1 (all) or in [2, 512], got 1",
        ),
        (
            dict(batch_size=8, sampling_nbest_size=513),
            "sampling_nbest_size",
            "must be -1 (all) or in [2, 512], got 513",
        ),
        (
            dict(batch_size=8, cache=True, sampling_alpha=0.1),
            "cache",
            "= True would keep the first pass's sampled segmentations; it cannot "
            "be combined with sampling_alpha > 0",
        ),
    ],
)
def test_batching_options_name_the_bad_field(values, field, problem):
    with pytest.raises(FieldError) as error:
        BatchingOptions(**values)
    assert (error.value.owner, error.value.field) == ("BatchingOptions", field)
    assert str(error.value) == f"BatchingOptions.{field} {problem}"


def test_batching_options_accept_the_edges_and_default_once():
    edges = BatchingOptions(
        batch_tokens=16, max_length=16, shuffle_buffer=1, sampling_nbest_size=512
    )
    assert (edges.batch_tokens, edges.max_length, edges.batch_size) == (16, 16, None)
    alpha = BatchingOptions(batch_size=1, max_length=2, sampling_alpha=0)
    assert alpha.sampling_alpha == 0.0 and isinstance(alpha.sampling_alpha, float)
    assert BatchingOptions(batch_size=4) == BatchingOptions(
        batch_size=4,
        max_length=128,
        shuffle=False,
        shuffle_buffer=None,
        seed=0,
        repeat=False,
        drop_remainder=False,
        sampling_alpha=0.0,
        sampling_nbest_size=-1,
        cache=False,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        alpha.batch_size = 2
