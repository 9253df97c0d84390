"""Atomic file writes: readers see the old file or the new one, never half."""

import os
import tempfile
from pathlib import Path


def write_atomic(path, data: bytes) -> Path:
    """Writes `data` to a temporary file beside `path`, then renames it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
