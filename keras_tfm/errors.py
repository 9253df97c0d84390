"""The errors keras_tfm raises for bad input, under one base class.

Each carries a one-line message that names what was wrong and where (file,
line, field). `keras-tfm` reports any `KerasTfmError` as
`keras-tfm: error: ...` with exit code 2; everything else is a bug. They
are `ValueError`s too, so code written against earlier releases that
caught `ValueError` still does.
"""


class KerasTfmError(ValueError):
    """Base of every error keras_tfm raises for bad input."""


class FieldError(KerasTfmError):
    """A bad value of one named field; `str()` reads "Owner.field problem"."""

    def __init__(self, owner, field, problem):
        self.owner, self.field, self.problem = owner, field, problem
        super().__init__(f"{owner}.{field} {problem}")


class ConfigError(KerasTfmError):
    """A config that cannot be used; the message names the file and field."""


class DataError(KerasTfmError):
    """Unusable data; the message names the file and line."""


class RunDirectoryError(KerasTfmError):
    """A run directory that lacks what was asked of it; the message says what."""


class ExportError(KerasTfmError):
    """An export that cannot be done; the message says why."""


class VersionExistsError(ExportError, FileExistsError):
    """The requested model version already exists (it is left untouched)."""


def check_int(owner, field, value, minimum):
    """`value` if it is an int (not a bool) >= `minimum`, else FieldError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FieldError(
            owner, field, f"must be an integer >= {minimum}, got {value!r}"
        )
    return value
