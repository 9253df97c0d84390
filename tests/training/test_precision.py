"""Whether bfloat16 pays off: the CPU's bfloat16 matrix instructions."""

from pathlib import Path

import pytest
import tensorflow as tf

from keras_tfm import training

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
flags\t\t: fpu sse2 avx2 fma {extra}

processor\t: 1
vendor_id\t: {vendor}
flags\t\t: fpu sse2 avx2 fma {extra}
"""


@pytest.mark.parametrize(
    "vendor, extra, expected",
    [
        ("GenuineIntel", "avx512f amx_bf16 amx_tile", True),
        ("GenuineIntel", "avx512f avx512_bf16", True),
        ("AuthenticAMD", "vaes", False),
        ("AuthenticAMD", "avx512f avx512_fp16", False),
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(vendor, extra, expected):
    text = CPUINFO.format(vendor=vendor, extra=extra)
    assert training.cpu_has_native_bfloat16(text) is expected
    assert training.cpu_has_native_bfloat16("processor\t: 0\n") is None


def test_native_bfloat16_of_this_machine():
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    words = set(text.split())
    expected = "amx_bf16" in words or "avx512_bf16" in words
    assert training.cpu_has_native_bfloat16() is expected
    assert training.bfloat16_is_emulated() is (
        not expected and not tf.config.list_physical_devices("GPU")
    )
