"""Integer model versions under a TF Serving model base path.

TF Serving's file-system source serves the folders of `base_dir/NAME` whose
names are integers (the highest by default) and ignores every other name, so
a version is written under a hidden temporary name and renamed into place
atomically: the server never sees half a version, and an existing version
is never replaced.
"""

import ctypes
import errno
import os
import re
from pathlib import Path

from keras_tfm.errors import ExportError, VersionExistsError

_VERSION_RE = re.compile(r"^[0-9]+$")


def integer_versions(model_dir):
    """`{version: path}` of the integer-named folders under `model_dir`."""
    versions = {}
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return versions
    for child in model_dir.iterdir():
        if _VERSION_RE.match(child.name):
            versions[int(child.name)] = child
    return versions


def next_version(model_dir):
    """1 + the highest integer version under `model_dir` (1 when none)."""
    versions = integer_versions(model_dir)
    return max(versions, default=0) + 1


def check_version_free(model_dir, version):
    existing = integer_versions(model_dir).get(version)
    if existing is not None:
        raise VersionExistsError(
            f"model version {version} already exists at {existing}; it is left "
            "untouched (omit the version to export the next one)"
        )


def rename_no_replace(source, target):
    """Renames the folder `source` to `target`, failing if `target` exists.

    Uses Linux `renameat2(RENAME_NOREPLACE)` so that a concurrent export of
    the same version cannot be replaced; elsewhere a checked `os.rename`.
    """
    source, target = os.fsencode(source), os.fsencode(target)
    renameat2 = None
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        pass
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1
        renameat2.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
        if renameat2(at_fdcwd, source, at_fdcwd, target, rename_noreplace) == 0:
            return
        code = ctypes.get_errno()
        if code in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(code, os.strerror(code), os.fsdecode(target))
        if code not in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
            raise OSError(code, os.strerror(code), os.fsdecode(target))
    if os.path.lexists(target):
        raise FileExistsError(
            errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(target)
        )
    os.rename(source, target)


def find_saved_model(path):
    """The SavedModel folder at `path`: `path` itself, or its highest version.

    `path` may be a version folder (`saved_models/NAME/3`) or a model base
    path (`saved_models/NAME`), where the highest integer version is used,
    as TF Serving's default version policy does.

    Raises:
        ExportError: when there is no SavedModel there.
    """
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = integer_versions(path)
    for version in sorted(versions, reverse=True):
        if (versions[version] / "saved_model.pb").is_file():
            return versions[version]
    raise ExportError(f"no SavedModel at {path} (no saved_model.pb, no version folder)")
