"""Reading the configuration's YAML files: pydantic models validate them, errors name the file, line and field.

Every file (owners, premium, annotations, rules, quality) has a model built on `ConfigModel`; `load_file`
reads the file with ruamel.yaml (which keeps each value's line), validates it and turns the first
validation error into a ConfigError such as `owners.yaml line 12: projects.search.budget_owner: is required`.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

OWNERS_FILE = "owners.yaml"
PREMIUM_FILE = "premium.yaml"
ANNOTATIONS_FILE = "annotations.yaml"
# The files every configuration directory holds (rules.yaml and quality.yaml have their own loaders).
CONFIG_FILES = (OWNERS_FILE, PREMIUM_FILE, ANNOTATIONS_FILE)

_RELATIVE_DATE = re.compile(r"^@anchor(?:([+-])(\d+))?$")
Model = TypeVar("Model", bound=BaseModel)
Location = tuple[str | int, ...]


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the line, the dotted path of the field and why."""

    def __init__(self, file: str, path: str, field_name: str, problem: str, line: int | None = None):
        self.file = file
        self.path = path
        self.field = field_name
        self.problem = problem
        self.line = line
        self.location = f"{path}.{field_name}" if path else field_name
        where = f" line {line}" if line else ""
        super().__init__(f"{file}{where}: {self.location + ': ' if self.location else ''}{problem}")


class FieldError(ValueError):
    """Raised by a model validator to blame a field below the model (`loc` is relative to the model)."""

    def __init__(self, loc: Location, problem: str):
        super().__init__(problem)
        self.loc = tuple(loc)


def describe(value: Any) -> str:
    """A value for an error message: its type and a short repr (never a URL, which may hold a secret)."""
    if value is None:
        return "nothing"
    if isinstance(value, str) and "://" in value:
        return "str (a URL, not shown)"
    return f"{type(value).__name__} {repr(value)[:60]}"


def _accepts_none(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return any(_accepts_none(arg) for arg in get_args(annotation))
    if get_origin(annotation) is Annotated:
        return _accepts_none(get_args(annotation)[0])
    return annotation is NoneType


class ConfigModel(BaseModel):
    """A part of a configuration file: unknown keys are errors, YAML types are not coerced.

    A null for a field that cannot be null means the field is left out (its default, or "is required").
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_and_nulls(cls, data: Any) -> Any:
        # Checked here rather than by extra="forbid" alone so the error lists the allowed keys, and comes
        # before the "is required" a misspelt key would also cause.
        if not isinstance(data, dict):
            return data
        nullable = {field.alias or name: _accepts_none(field.annotation) for name, field in cls.model_fields.items()}
        unknown = [key for key in data if key not in nullable]
        if unknown:
            raise FieldError((unknown[0],), f"unknown field (allowed: {', '.join(nullable)})")
        return {key: value for key, value in data.items() if value is not None or nullable[key]}


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _day(value: Any, info: ValidationInfo) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        relative = _RELATIVE_DATE.match(value.strip())
        if relative:
            anchor = (info.context or {}).get("anchor")
            if anchor is None:
                raise ValueError(f"{value!r} is relative to an anchor, but the file sets no 'anchor'")
            sign, days = relative.groups()
            return anchor + timedelta(days=int(days or 0) * (-1 if sign == "-" else 1))
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a date YYYY-MM-DD or @anchor±N, got {describe(value)}")


# A UTC date, or "@anchor", "@anchor-6", "@anchor+2" relative to the file's `anchor`.
Day = Annotated[date, PlainValidator(_day), WithJsonSchema({
    "type": "string", "pattern": r"^(\d{4}-\d{2}-\d{2}|@anchor([+-]\d+)?)$",
    "description": "a UTC date YYYY-MM-DD, or @anchor±N days relative to the file's anchor"})]


class Document:
    """A YAML file's plain data and the line of every key and list item in it."""

    def __init__(self, path: Path, data: Any, lines: dict[Location, int]):
        self.path = path
        self.data = data
        self.lines = lines

    def line(self, loc: Location) -> int:
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1

    def error(self, loc: Location, problem: str) -> ConfigError:
        """A ConfigError at `loc` (a key path inside the document)."""
        field_at = max((i for i, part in enumerate(loc) if isinstance(part, str)), default=None)
        if field_at is None:
            path, field_name = "", _dotted(loc) or "(document)"
        else:
            path, field_name = _dotted(loc[:field_at]), _dotted(loc[field_at:])
        return ConfigError(str(self.path), path, field_name, problem, self.line(loc))

    def location(self, loc: Location, keep_from: int) -> Location:
        """`loc` of a validation error as a key path into the data; parts from `keep_from` on are kept even
        when absent (a missing field), other unknown parts (a union member's tag, `[key]`) are dropped."""
        found: list[str | int] = []
        node = self.data
        for index, part in enumerate(loc):
            if isinstance(node, dict) and part in node or \
                    isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                found.append(part)
                node = node[part]
            elif index >= keep_from:
                found.append(part)
                node = None
            elif not isinstance(node, dict | list):
                break
        return tuple(found)


def _dotted(loc: Location) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _plain(node: Any, loc: Location, lines: dict[Location, int]) -> Any:
    """ruamel's round-trip values as plain Python, recording each key's and item's line."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        plain = {}
        for key, value in node.items():
            key = _plain(key, (), {})
            lines[loc + (key,)] = node.lc.key(key)[0] + 1
            plain[key] = _plain(value, loc + (key,), lines)
        return plain
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            lines[loc + (index,)] = node.lc.item(index)[0] + 1
            items.append(_plain(value, loc + (index,), lines))
        return items
    for kind in (bool, int, float, str):
        if isinstance(node, kind):
            return kind(node)
    if isinstance(node, datetime):
        return datetime(node.year, node.month, node.day, node.hour, node.minute, node.second, node.microsecond)
    return node


def read_yaml(path: Path, missing: str | None = None) -> Document:
    """The file's data with its line marks; a missing file or a YAML syntax error is a ConfigError."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not path.is_file():
        raise ConfigError(str(path), "", "", missing or "file not found (every config directory needs "
                          f"{', '.join(CONFIG_FILES)})")
    loader = YAML(typ="rt")
    loader.version = (1, 1)  # yes/no/on/off are booleans, as they always were in these files
    try:
        raw = loader.load(path.read_text())
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(str(path), "", "(yaml)", f"not valid YAML: {problem}",
                          mark.line + 1 if mark else None) from None
    lines: dict[Location, int] = {}
    data = _plain(raw, (), lines)
    return Document(path, {} if data is None else data, lines)


_PROBLEMS = {
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "float_type": "expected a number", "float_parsing": "expected a number",
    "int_type": "expected a whole number", "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "string_type": "expected a string", "string_too_short": "expected a non-empty string",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping", "model_type": "expected a mapping", "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "greater_than_equal": "must be >= {ge}", "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}", "less_than": "must be < {lt}",
    "too_short": "needs at least {min_length} entry", "string_pattern_mismatch": "does not look like {pattern}",
}


def problem_text(error: dict[str, Any]) -> str:
    """One pydantic error in the configuration's words: what is wrong and, for a bad value, the value."""
    kind, context = error["type"], error.get("ctx") or {}
    if kind == "value_error":
        return str(context["error"])
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", context.get("expected", "")) or [context.get("expected", "")]
        text = f"expected one of {', '.join(choices)}"
    elif kind in _PROBLEMS:
        text = _PROBLEMS[kind].format(**{key: f"{value:g}" if isinstance(value, float) else value
                                         for key, value in context.items()})
    else:
        text = error["msg"]
    return text if kind in ("missing", "extra_forbidden") else f"{text}, got {describe(error.get('input'))}"


def translate(document: Document, exc: ValidationError, prefix: Location = ()) -> ConfigError:
    """The first validation error as a ConfigError naming the file, line and dotted field."""
    error = exc.errors(include_url=False)[0]
    loc = prefix + tuple(error["loc"])
    keep_from = len(loc) - 1 if error["type"] == "missing" else len(loc)
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        loc += cause.loc
    return document.error(document.location(loc, keep_from), problem_text(error))


def load_file(model: type[Model], path: Path, *, missing: str | None = None,
              context: dict[str, Any] | None = None) -> tuple[Model, Document]:
    """Read `path` and validate it as `model`; the document is returned for later errors that name a line.

    A file whose model has an `anchor` field may date things relative to it ("@anchor-6").
    """
    document = read_yaml(path, missing)
    if not isinstance(document.data, dict):
        raise document.error((), f"expected a mapping at the top, got {describe(document.data)}")
    context = dict(context or {})
    if "anchor" in model.model_fields and document.data.get("anchor") is not None:
        try:
            context["anchor"] = TypeAdapter(Day).validate_python(document.data["anchor"])
        except ValidationError as exc:
            raise translate(document, exc, ("anchor",)) from None
    try:
        return model.model_validate(document.data, context=context), document
    except ValidationError as exc:
        raise translate(document, exc) from None
