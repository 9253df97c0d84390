"""Whether bfloat16 pays off: the CPU's bfloat16 matrix instructions."""

import os
import re
import shutil
import subprocess
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
        ("AuthenticAMD", "avx512f avx512_bf16", True),  # Zen 4
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(vendor, extra, expected):
    text = CPUINFO.format(vendor=vendor, extra=extra)
    assert training.cpu_has_native_bfloat16(text) is expected
    assert training.cpu_has_native_bfloat16("processor\t: 0\n") is None


def cpu_flags():
    """This CPU's flags, read without keras_tfm: `lscpu`'s `Flags:` line,
    or where lscpu is missing the `flags` lines of /proc/cpuinfo; None
    where neither is there."""
    lscpu = shutil.which("lscpu")
    if lscpu:
        result = subprocess.run(
            [lscpu], capture_output=True, text=True, env=dict(os.environ, LC_ALL="C")
        )
        line = re.search(r"^Flags:[ \t]*(.*)$", result.stdout, re.MULTILINE)
        if result.returncode == 0 and line:
            return set(line.group(1).split())
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    lines = re.findall(r"^flags[ \t]*:(.*)$", text, re.MULTILINE)
    return set(" ".join(lines).split()) if lines else None


def test_native_bfloat16_of_this_machine():
    flags = cpu_flags()
    if flags is None:
        pytest.skip("neither lscpu nor /proc/cpuinfo lists the CPU flags")
    expected = bool(flags & {"amx_bf16", "avx512_bf16"})
    assert training.cpu_has_native_bfloat16() is expected
    assert training.bfloat16_is_emulated() is (
        not expected and not tf.config.list_physical_devices("GPU")
    )
