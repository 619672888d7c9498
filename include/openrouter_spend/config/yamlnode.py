"""Reading the configuration's YAML files: values with their place in the file, and errors that name it.

Every loader (owners, premium, annotations, rules, quality) walks its file through `Node`, so every problem
raises a ConfigError naming the file, the path inside it and the field.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

OWNERS_FILE = "owners.yaml"
PREMIUM_FILE = "premium.yaml"
ANNOTATIONS_FILE = "annotations.yaml"
# The files every configuration directory holds (rules.yaml and quality.yaml have their own loaders).
CONFIG_FILES = (OWNERS_FILE, PREMIUM_FILE, ANNOTATIONS_FILE)

_RELATIVE_DATE = re.compile(r"^@anchor(?:([+-])(\d+))?$")


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the path inside it and the field."""

    def __init__(self, file: str, path: str, field_name: str, problem: str):
        self.file = file
        self.path = path
        self.field = field_name
        self.problem = problem
        where = f"at {path}, " if path else ""
        super().__init__(f"{file}: {where}field '{field_name}': {problem}")


class Node:
    """A value inside one YAML file, with the path used in error messages."""

    def __init__(self, file: str, path: str, value: Any, anchor: date | None = None):
        self.file = file
        self.path = path
        self.value = value
        self.anchor = anchor

    def error(self, field_name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.path, field_name, problem)

    def _child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else str(key)

    def mapping(self, name: str, required: tuple[str, ...] = (), optional: tuple[str, ...] = (),
                *, any_keys: bool = False) -> dict:
        """Check the node is a mapping with only the allowed keys; `name` is this node's field name."""
        if self.value is None and not required:
            self.value = {}
        if not isinstance(self.value, dict):
            where = self.path if self.path.endswith("]") else self._parent_path()
            raise ConfigError(self.file, where, name, f"expected a mapping, got {describe(self.value)}")
        for key in self.value:
            if not any_keys and (not isinstance(key, str) or key not in required + optional):
                allowed = ", ".join(required + optional)
                raise self.error(str(key), f"unknown field (allowed: {allowed})")
        for key in required:
            if key not in self.value or self.value[key] is None:
                raise self.error(key, "is required")
        return self.value

    def _parent_path(self) -> str:
        return self.path.rsplit(".", 1)[0] if "." in self.path else ""

    def child(self, key: str | int) -> Node:
        value = self.value[key] if isinstance(self.value, list) else self.value.get(key)
        return Node(self.file, self._child_path(key), value, self.anchor)

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self.value.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string, got {describe(value)}")
        return value.strip()

    def number(self, key: str, *, minimum: float = 0.0, exclusive: bool = False,
               required: bool = False) -> float | None:
        value = self.value.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {describe(value)}")
        if value < minimum or (exclusive and value == minimum):
            bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
            raise self.error(key, f"must be {bound}, got {value!r}")
        return float(value)

    def day(self, key: str, *, required: bool = True) -> date | None:
        value = self.value.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            relative = _RELATIVE_DATE.match(value.strip())
            if relative:
                if self.anchor is None:
                    raise self.error(key, f"{value!r} is relative to an anchor, but the file sets no 'anchor'")
                sign, days = relative.groups()
                offset = int(days or 0) * (-1 if sign == "-" else 1)
                return self.anchor + timedelta(days=offset)
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.error(key, f"expected a date YYYY-MM-DD or @anchor±N, got {describe(value)}")

    def items(self, key: str) -> list[Node]:
        value = self.value.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {describe(value)}")
        node = self.child(key)
        return [node.child(index) for index in range(len(value))]


def describe(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


def read_yaml(path: Path, missing: str | None = None) -> Any:
    import yaml

    if not path.is_file():
        raise ConfigError(str(path), "", path.name, missing or "file not found (every config directory needs "
                          f"{', '.join(CONFIG_FILES)})")
    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), where, "(yaml)", f"not valid YAML: {problem}") from None
