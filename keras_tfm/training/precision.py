"""Whether bfloat16 mixed precision is likely to pay off on this machine."""


def cpu_has_native_bfloat16(cpuinfo=None):
    """Whether this CPU multiplies bfloat16 matrices in hardware.

    TensorFlow's oneDNN kernels use AMX (`amx_bf16`) or AVX-512 BF16
    (`avx512_bf16`). Without either, bfloat16 matrix products and
    keras_tfm's `mixed_bfloat16` training step are slower than float32
    ones (measured on a CPU without them: `benchmarks/README.md`).

    Args:
        cpuinfo: the text of `/proc/cpuinfo` (default: read it).

    Returns:
        True or False, or None where `/proc/cpuinfo` cannot be read (not
        Linux).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            flags.update(value.split())
    if not flags:
        return None
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def bfloat16_is_emulated():
    """True when this process has no GPU and its CPU lacks bfloat16 matrix
    instructions (`cpu_has_native_bfloat16`), so that `mixed_bfloat16` is
    likely slower than float32."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return False
    return cpu_has_native_bfloat16() is False
