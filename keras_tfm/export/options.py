"""Choices and defaults of exports, defined once for the API, the training
job's `[export]` section and the `keras-tfm export` command."""

# The dtypes an exported graph computes in: float32 (the reference) or
# bfloat16 (half the weight memory, faster on CPUs with AMX or AVX512-BF16).
EXPORT_DTYPES = ("float32", "bfloat16")

# Where SavedModels go unless told otherwise: saved_models/NAME/VERSION/.
DEFAULT_BASE_DIR = "saved_models"
