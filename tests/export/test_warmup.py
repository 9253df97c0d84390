"""The warmup shapes of an export."""

from keras_tfm.export.warmup import warmup_shapes


def test_a_graph_without_xla_warms_up_with_two_small_requests():
    assert warmup_shapes(64, jit_compile=False) == [(1, 8), (8, 16)]
    assert warmup_shapes(5, jit_compile=False) == [(1, 5), (8, 5)]


def test_an_xla_export_warms_up_every_bucket():
    # Rows pad to powers of two, lengths to multiples of 16 (at most the
    # source limit, and never below the length itself).
    shapes = warmup_shapes(40, jit_compile=True)
    batches = [1, 2, 4, 8, 16, 32, 64]
    assert shapes == [(b, n) for b in batches for n in (16, 32, 40)]
