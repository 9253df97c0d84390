"""Reading a config of frozen dataclass sections from TOML, with precise messages.

`read_toml` parses the file and `build_config` builds the config:
`check_type` checks each value against its dataclass field's annotation,
`unknown_name` suggests the closest valid name, and `Locator` finds the line
of a key in the file's text for the message. `toml_value` writes values
back. Nothing here knows the training job's sections
(`keras_tfm.job.training_sections` and `keras_tfm.job.decoding_sections`
define them, `keras_tfm.job.run_config` puts them together).
"""

import dataclasses
import difflib
import re
import tomllib
from pathlib import Path

from keras_tfm.errors import ConfigError, FieldError


def read_toml(path, default_text, default_source):
    """`(mapping, text, source)` of the TOML file at `path` (None: the default).

    Raises:
        ConfigError: when the file cannot be read or is not TOML.
    """
    if path is None:
        text, source = default_text, default_source
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"{source}: cannot read config ({error.strerror})"
            ) from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"{source}: not UTF-8 ({error.reason})") from None
    try:
        return tomllib.loads(text), text, source
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: {error}") from None


def build_config(config_cls, sections, raw, source, text=None, overrides=None):
    """`config_cls(name=..., source=..., **sections)` from a TOML/JSON mapping.

    Args:
        config_cls: the whole config's dataclass.
        sections: `{section name: section dataclass}`.
        raw: `{"name": ..., section: {...}, ...}`.
        source: the file name, for messages.
        text: the file's text, to find the line of a bad key.
        overrides: `{"section.key": (flag, value)}`; they replace the file's
            values (None values are skipped) and messages name the flag.

    Raises:
        ConfigError: naming the file, line, section and key.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v[1] is not None}
    where = Locator(source, text, overrides)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a table of sections")
    for key, value in raw.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(where(None, key, "must be a table [" + key + "]"))
        elif isinstance(value, dict):
            problem = unknown_name(key, list(sections), form="[{}]")
            raise ConfigError(where(None, key, problem, label=f"section [{key}]"))
        elif key != "name":
            raise ConfigError(where(None, key, unknown_name(key, ["name"])))
    built = {}
    try:
        for section, section_cls in sections.items():
            values = dict(raw.get(section, {}))
            for dotted, (_, value) in overrides.items():
                if dotted.startswith(section + "."):
                    values[dotted.split(".", 1)[1]] = value
            built[section] = build_section(section, section_cls, values)
        name = raw.get("name", Path(source).stem)
        return config_cls(name=name, source=source, **built)
    except FieldError as error:
        raise ConfigError(where(error.owner, error.field, error.problem)) from None


def check_range(owner, name, value, low, high=None, low_open=False):
    """FieldError unless `value` (None: not set) is in the given range."""
    if value is None:
        return
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value >= high):
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound = f"in [{low}, {high})"
        raise FieldError(owner, name, f"must be {bound}, got {value!r}")


def check_choice(section, name, value, choices):
    """FieldError unless `value` is one of `choices`."""
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise FieldError(section, name, f"must be one of {listed}, got {value!r}")


def build_section(section, section_cls, values):
    """One section's dataclass from its values (its own checks run in its
    constructor)."""
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    for key in values:
        if key not in fields:
            raise FieldError(section, key, unknown_name(key, list(fields)))
    checked = {
        key: check_type(section, key, value, fields[key].type)
        for key, value in values.items()
    }
    return section_cls(**checked)


def unknown_name(key, valid, form="{!r}"):
    """A problem for an unknown name: the closest valid one, or all of them."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"is unknown; did you mean {form.format(close[0])}?"
    return f"is unknown; valid: {', '.join(form.format(name) for name in valid)}"


_KINDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    tuple[str, ...]: "a list of strings",
    tuple[int, ...]: "a list of integers",
}
_LISTS = {tuple[str, ...]: str, tuple[int, ...]: int}


def check_type(section, key, value, annotation):
    """`value` if it fits the field's type (ints accepted as floats, lists
    of strings or integers as tuples), else FieldError."""
    kinds = [a for a in getattr(annotation, "__args__", (annotation,))]
    if annotation in _LISTS:
        kinds = [annotation]
    if value is None and type(None) in kinds:
        return None
    kind = next(k for k in kinds if k is not type(None))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in _LISTS:
        item = _LISTS[kind]
        if isinstance(value, (list, tuple)) and all(
            isinstance(v, item) and not isinstance(v, bool) for v in value
        ):
            return tuple(value)
    elif isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise FieldError(section, key, f"must be {_KINDS[kind]}, got {value!r}")


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    # A TOML basic string: backslash, quote and control characters escaped.
    escaped = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\' else c for c in str(value)
    )
    return f'"{escaped}"'


class Locator:
    """Formats `file, line N: [section] key problem` for a config's messages."""

    _HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]")

    def __init__(self, source, text, overrides):
        self.source, self.overrides = source, overrides
        self.lines = text.splitlines() if text else []

    def line_of(self, section, key):
        current = None
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for number, line in enumerate(self.lines, start=1):
            header = self._HEADER.match(line)
            if header:
                current = header.group(1)
                if section is None and current == key:
                    return number
            elif current == section and pattern.match(line):
                return number
        return None

    def __call__(self, section, key, problem, label=None):
        field = label or (f"[{section}] {key}" if section else key)
        flag = self.overrides.get(f"{section}.{key}")
        if flag is not None:
            return f"{flag[0]} {flag[1]}: {field} {problem}"
        line = self.line_of(section, key)
        location = f"{self.source}, line {line}" if line else self.source
        return f"{location}: {field} {problem}"
