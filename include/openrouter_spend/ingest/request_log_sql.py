"""The request-log schema as DuckDB SQL: the published JSON Schema compiled into the loader's checks and scans.

schemas/request-log.schema.json is the rule book: this module compiles it into SQL conditions (types, lengths,
patterns, ranges, the members of `usage`), so the schema and the loader cannot drift apart. requests_log runs
the scans it builds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings
from openrouter_spend.escaping import sql_literal

SCHEMA_PATH = settings.PROJECT_ROOT / "schemas" / "request-log.schema.json"
# DuckDB splits lines with read_csv; this byte never occurs in valid JSON text (control characters must be
# escaped), so a valid line is never split. Longer lines than MAX_LINE_BYTES fail the file, named.
_NO_DELIMITER = "\x01"
MAX_LINE_BYTES = 4 * 1024 * 1024
# A blank (or whitespace-only) line; trim() is slow, so it only runs on lines starting with whitespace.
_BLANK = ("case when line is null then true when left(line, 1) not in (' ', chr(9), chr(13)) then false "
          "else trim(line, ' ' || chr(9) || chr(13)) = '' end")

# The published JSON Schema is the rule book: `_checks` compiles it into SQL conditions (types, lengths, patterns,
# ranges, the members of `usage`), so the schema and the loader cannot drift apart. The objects
# (openrouter_metadata, usage) are kept verbatim; marts read openrouter_metadata's members leniently (a member of
# an unexpected type reads as unknown), so only the members of `usage` that feed sums are checked here.
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
KNOWN_FIELDS = tuple(SCHEMA["properties"])
REQUIRED_FIELDS = tuple(SCHEMA.get("required", ()))

# What the first character of a minified JSON value says about its type (DuckDB hands us minified values), which
# is far cheaper than parsing it again; json_type() runs only to word the reason for a bad line.
# DuckDB's reader also accepts Infinity and NaN as numbers; they count as numbers here and fail the range checks.
_FIRST_CHARACTERS = {"string": ('"',), "null": ("n",), "array": ("[",), "object": ("{",), "boolean": ("t", "f"),
                     "number": tuple("-0123456789IN"), "integer": tuple("-0123456789IN")}
_TYPE_WORDS = {"string": "a string", "null": "null", "array": "an array", "object": "an object",
               "boolean": "a boolean", "number": "a number", "integer": "an integer"}
_JSON_TYPE_NAMES = {"VARCHAR": "string", "NULL": "null", "ARRAY": "array", "OBJECT": "object", "BOOLEAN": "boolean",
                    "UBIGINT": "integer", "BIGINT": "integer", "DOUBLE": "number"}


def _sql_list(values: Iterable[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


_FIELDS_AS_JSON = "{" + ", ".join(f"'{name}': 'JSON'" for name in KNOWN_FIELDS) + "}"


def _type_name(kind: str) -> str:
    return ("case " + kind + " " + " ".join(f"when '{t}' then '{n}'" for t, n in _JSON_TYPE_NAMES.items())
            + " else 'missing' end")


def _string(value: str) -> str:
    """The text of a minified JSON string literal; unescaping (a JSON parse) only when it has escapes."""
    return (f"case when left({value}, 1) <> '\"' then null when contains({value}, '\\') then {value} ->> '$' "
            f"else {value}[2:-2] end")


def _types(spec: dict) -> list[str]:
    kinds = spec.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _is(value: str, *kinds: str) -> str:
    """SQL: the JSON value is of one of these schema types, by the code of its first character.

    Integer comparisons rather than IN: DuckDB plans an IN list of many constants as a join.
    """
    codes = sorted({ord(c) for kind in kinds for c in _FIRST_CHARACTERS[kind]})
    runs: list[list[int]] = []
    for code in codes:
        if runs and code == runs[-1][-1] + 1:
            runs[-1].append(code)
        else:
            runs.append([code])
    first = f"ascii({value})"
    tests = [f"{first} = {run[0]}" if len(run) == 1 else f"{first} between {run[0]} and {run[-1]}" for run in runs]
    return "(" + " or ".join(tests) + ")"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _objects_with_members() -> list[tuple[str, dict]]:
    return [(name, spec) for name, spec in SCHEMA["properties"].items() if spec.get("properties")]


def _typed_fields() -> tuple[list[str], list[str]]:
    """SQL columns, each computed once a line: the text of every top-level field with an `x-sql-type`
    (created_at), then its typed value (a step later, as it reads the text)."""
    converted = [(name, spec["x-sql-type"]) for name, spec in SCHEMA["properties"].items() if spec.get("x-sql-type")]
    return ([f"{_string(f'f.{name}')} as {name}__text" for name, _ in converted],
            [f"try_cast({name}__text as {sql_type}) as {name}__value" for name, sql_type in converted])


_DUCKDB_TYPES = {"number": "DOUBLE", "integer": "DOUBLE", "boolean": "BOOLEAN", "string": "VARCHAR"}


def _typed_structure(spec: dict) -> dict:
    """The from_json structure that reads an object's checked members as DuckDB values (as the marts read them)."""
    structure: dict[str, Any] = {}
    for name, member in spec.get("properties", {}).items():
        kinds = [kind for kind in _types(member) if kind != "null"]
        if member.get("properties"):
            structure[name] = _typed_structure(member)
        elif len(kinds) == 1 and kinds[0] in _DUCKDB_TYPES:
            structure[name] = _DUCKDB_TYPES[kinds[0]]
    return structure


def _typed_columns() -> list[str]:
    """SQL columns: each object field whose members the schema checks, read once as typed values."""
    return [f"case when left(f.{name}, 1) = '{{' then from_json(f.{name}, {sql_literal(json.dumps(_typed_structure(spec)))}) "
            f"end as {name}__typed" for name, spec in _objects_with_members()]


def _surely_valid(name: str, spec: dict) -> str:
    """SQL: cheap proof that every checked member of the object is valid; the common case skips the exact checks.

    No member name is followed by the first character of a type the member may not have (a pattern over the
    object's text; a name met elsewhere in the object only sends the line to the exact checks), the text has
    no escapes (an escaped name would dodge the pattern), and the typed values are within their bounds.
    """
    text = f"f.{name}::varchar"
    allowed_by_name: dict[str, list[str]] = {}
    bounds = []
    for path, member in _member_specs(spec):
        kinds = _types(member)
        allowed = "".join(sorted({c for kind in kinds for c in _FIRST_CHARACTERS[kind]}))
        allowed_by_name.setdefault(allowed, []).append(path.rsplit(".", 1)[1])
        value = f"{name}__typed" + "".join(f"['{part}']" for part in path.removeprefix("$.").split("."))
        tests = [f"{value} >= {member['minimum']}" if "minimum" in member else "",
                 f"{value} <= {member['maximum']}" if "maximum" in member else "",
                 f"{value} = trunc({value})" if "integer" in kinds and "number" not in kinds else ""]
        if any(tests):
            bounds.append(f"coalesce({value} is null or ({' and '.join(t for t in tests if t)}), false)")
    wrong_type = "|".join(
        '"(' + "|".join(names) + r')"\s*:\s*[^' + "".join(re.escape(c) for c in allowed) + r"\s]"
        for allowed, names in allowed_by_name.items())
    return " and ".join([f"not contains({text}, '\\')", f"not regexp_matches({text}, {sql_literal(wrong_type)})",
                         *bounds])


def _member_lists() -> list[str]:
    """SQL columns: for an object that is not surely valid, its checked members extracted in one parse."""
    return [f"case when left(f.{name}, 1) = '{{' and not ({_surely_valid(name, spec)}) then "
            f"json_extract(f.{name}, {_sql_list(path for path, _ in _member_specs(spec))})::varchar[] end "
            f"as {name}__members" for name, spec in _objects_with_members()]


def _member_specs(spec: dict, prefix: str = "$") -> list[tuple[str, dict]]:
    """(JSON path, schema) of every member an object's schema names, nested ones included, in schema order."""
    found = []
    for name, member in spec.get("properties", {}).items():
        found.append((f"{prefix}.{name}", member))
        found += _member_specs(member, f"{prefix}.{name}")
    return found


def _member_checks(name: str, spec: dict) -> list[tuple[str, str]]:
    """(bad-condition, reason SQL) pairs for the members of an object field, exact, for objects not surely valid.

    Each condition first tests that the object was extracted (`_member_lists`): a valid line stops there.
    """
    checks = []
    for index, (path, member) in enumerate(_member_specs(spec), start=1):
        value = f"{name}__members[{index}]"
        for condition, message in _field_checks(name + path.removeprefix("$"), value, member):
            checks.append((f"{name}__members is not null and ({condition})", message))
    return checks


def _field_checks(name: str, value: str, spec: dict, *, required: bool = False, top_level: bool = False,
                  file_modified_at: datetime | None = None) -> list[tuple[str, str]]:
    """(bad-condition, reason SQL) pairs for one field's own rules; `value` is its minified JSON text or NULL.

    A top-level field with an `x-sql-type` reads its text and typed value from the columns `_typed_fields` adds.
    The members of an object are checked by `_member_checks`.
    """
    kinds = _types(spec)
    checks = []
    if required:
        checks.append((f"{value} is null or {value} = 'null'", f"'missing {name}'"))
    expected = " or ".join(dict.fromkeys(_TYPE_WORDS[kind] for kind in kinds))
    checks.append((f"{value} is not null and not ({_is(value, *kinds)})",
                   f"'{name} must be {expected}, got ' || {_type_name(f'json_type({value})')}"))
    converted = top_level and spec.get("x-sql-type")
    text = f"{name}__text" if converted else _string(value)
    if "string" in kinds:
        if spec.get("minLength") == 1:
            checks.append((f"{value} = '\"\"'", f"'{name} must not be empty'"))
        elif spec.get("minLength"):
            checks.append((f"{_is(value, 'string')} and length({text}) < {spec['minLength']}",
                           f"'{name} must have at least {spec['minLength']} characters'"))
        if "maxLength" in spec:
            # A JSON literal has at least two bytes more than its text has characters: decode only long ones.
            checks.append((f"{_is(value, 'string')} and strlen({value}) > {spec['maxLength'] + 2} "
                           f"and length({text}) > {spec['maxLength']}",
                           f"'{name} is longer than {spec['maxLength']} characters'"))
        if "pattern" in spec:
            pattern = spec["pattern"].removeprefix("^").removesuffix("$")
            meaning = spec.get("x-pattern-meaning", f"matching {pattern}")
            bad = f"not regexp_full_match({text}, {sql_literal(pattern)})"
            if spec.get("x-sql-type"):  # e.g. a timestamp that matches the pattern but is not a real time
                typed = f"{name}__value" if converted else f"try_cast({text} as {spec['x-sql-type']})"
                bad += f" or {typed} is null"
            checks.append((f"{_is(value, 'string')} and ({bad})", f"'{name} is not {meaning}: ' || {text}"))
        moment = f"{name}__value" if converted else f"try_cast({text} as timestamptz)"
        if "x-not-before" in spec:
            checks.append((f"{_is(value, 'string')} and {moment} < timestamptz {sql_literal(spec['x-not-before'])}",
                           f"'{name} ' || {text} || ' is before {spec['x-not-before']}'"))
        if "x-not-after-file-modified-hours" in spec and file_modified_at is not None:
            hours = spec["x-not-after-file-modified-hours"]
            latest = (file_modified_at + timedelta(hours=hours)).astimezone(UTC).isoformat()
            checks.append((f"{_is(value, 'string')} and {moment} > timestamptz {sql_literal(latest)}",
                           f"'{name} ' || {text} || ' is more than {hours} hours after the file was last modified "
                           f"({file_modified_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ})'"))
    if "integer" in kinds or "number" in kinds:
        number = f"try_cast({value} as double)"
        if "integer" in kinds and "number" not in kinds:
            checks.append((f"{_is(value, 'number')} and not coalesce({number} = trunc({number}), false)",
                           f"'{name} must be an integer, got ' || {value}"))
        if "minimum" in spec:
            checks.append((f"{_is(value, 'number')} and not coalesce({number} >= {spec['minimum']}, false)",
                           f"'{name} must be at least {_number(spec['minimum'])}, got ' || {value}"))
        if "maximum" in spec:
            checks.append((f"{_is(value, 'number')} and not coalesce({number} <= {spec['maximum']}, false)",
                           f"'{name} must be at most {_number(spec['maximum'])}, got ' || {value}"))
    if "array" in kinds:
        if "maxItems" in spec:
            checks.append((f"{_is(value, 'array')} and json_array_length({value}) > {spec['maxItems']}",
                           f"'{name} has more than {spec['maxItems']} items'"))
        items = spec.get("items")
        if items:
            elements = f"from_json({value}, '[\"JSON\"]')"
            item_kinds = _types(items)
            checks.append((f"{_is(value, 'array')} and not coalesce(list_bool_and(list_transform({elements}, "
                           f"lambda e: {_is('e', *item_kinds)})), true)",
                           f"'{name} must be an array of {' or '.join(k + 's' for k in item_kinds)}'"))
            if "maxLength" in items:
                checks.append((f"{_is(value, 'array')} and coalesce(list_bool_or(list_transform({elements}, "
                               f"lambda e: length(e) > {items['maxLength'] + 2} "
                               f"and length({_string('e')}) > {items['maxLength']})), false)",
                               f"'{name} has an item longer than {items['maxLength']} characters'"))
    return checks


def _checks(file_modified_at: datetime | None = None) -> list[tuple[str, str]]:
    """Every rule of the request-log schema as (bad-condition, reason SQL), in the order they are reported."""
    checks: list[tuple[str, str]] = [
        ("not is_json", "'invalid JSON'"),
        ("line_type <> 'OBJECT'", "'not a JSON object (got ' || " + _type_name("line_type") + " || ')'"),
    ]
    for name, spec in SCHEMA["properties"].items():
        checks += _field_checks(name, f"f.{name}", spec, required=name in REQUIRED_FIELDS, top_level=True,
                                file_modified_at=file_modified_at)
        if spec.get("properties"):
            checks += _member_checks(name, spec)
    return checks


def _read_lines(path: Path | str, compression: str) -> str:
    """read_csv of a file as one VARCHAR per line (line numbers and raw text, even for lines that are not JSON)."""
    literal = str(path).replace("'", "''")
    return (f"read_csv('{literal}', columns = {{'line': 'VARCHAR'}}, delim = '{_NO_DELIMITER}', quote = '', "
            f"escape = '', header = false, auto_detect = false, strict_mode = false, "
            f"max_line_size = {MAX_LINE_BYTES}, compression = '{compression}')")


def _read_objects(path: Path | str, compression: str) -> str:
    """read_json_objects of a file: one JSON text per non-blank line, NULL for a line that is not JSON."""
    literal = str(path).replace("'", "''")
    return (f"read_json_objects('{literal}', format = 'newline_delimited', ignore_errors = true, "
            f"maximum_object_size = {MAX_LINE_BYTES}, compression = '{compression}')")


def scan_sql(path: Path | str, compression: str = "auto", *, numbered: bool = False,
             file_modified_at: datetime | None = None) -> str:
    """The SELECT that reads one file and checks every line against the request-log schema.

    The bulk scan (`numbered=False`) lets DuckDB's parallel JSON reader type the known fields and returns
    the valid lines, typed; it has no line numbers or text. The numbered scan reads the file line by line
    in order (single-threaded) and returns every line with its number, its reason when it is bad (with its
    text) and its typed values when it is valid; it runs only for files that have bad lines. Both apply
    the same checks; `file_modified_at` bounds how late a created_at may be.
    """
    reason = "\n".join(f"            when {condition} then {message}"
                       for condition, message in _checks(file_modified_at))
    literal = str(path).replace("'", "''")
    if numbered:
        source = f"""
lines as (
    select line_number, line
    from {_read_lines(path, compression)} with ordinality as numbered (line, line_number)
),

parsed as (
    select line_number, line, json_valid(line) as is_json
    from lines
    where not ({_BLANK})
),

typed_lines as (
    select *, case when is_json then json_type(line) end as line_type
    from parsed
),

objects as (
    select *, case when line_type = 'OBJECT' then from_json(line, '{json.dumps(dict.fromkeys(KNOWN_FIELDS, "JSON"))}') end as f
    from typed_lines
),"""
    else:
        source = f"""
objects as (
    select
        null::bigint as line_number,
        null::varchar as line,
        true as is_json,
        'OBJECT' as line_type,
        {{{", ".join(f"'{name}': {name}" for name in KNOWN_FIELDS)}}} as f
    from read_json('{literal}', format = 'newline_delimited', columns = {_FIELDS_AS_JSON}, ignore_errors = true,
                   maximum_object_size = {MAX_LINE_BYTES}, compression = '{compression}')
),"""
    typed = [
        f"{_string('f.generation_id')} as generation_id",
        "created_at__value as created_at",
        *(f"{_string('f.' + name)} as {name}" for name in ("api_key_hash", "project", "workflow", "requested_model")),
        "case when left(f.requested_models, 1) = '[' then from_json(f.requested_models, '[\"VARCHAR\"]') end"
        " as requested_models",
        "case f.accepted when 'true' then true when 'false' then false end as accepted",
        *(f"{_string('f.' + name)} as {name}" for name in ("retry_of", "request_fingerprint")),
        "case when left(f.openrouter_metadata, 1) = '{' then f.openrouter_metadata end as openrouter_metadata",
        "case when left(f.usage, 1) = '{' then f.usage end as usage",
    ]
    if numbered:
        # Every line with its reason; typed values only where the line is valid.
        outputs = ["line_number", "reason", "case when reason is not null then line end as bad_line",
                   *(f"case when reason is null then {expression.rsplit(' as ', 1)[0]} end as "
                     f"{expression.rsplit(' as ', 1)[1]}" for expression in typed)]
        valid_only = ""
    else:
        # Only the valid lines; the reason is computed once, in the filter.
        outputs = typed
        valid_only = "\nwhere reason is null"
    outputs = ",\n    ".join(outputs)
    reason_column = f"case\n{reason}\n        end as reason"
    # Values the checks share, each computed once a line; a step may read the columns of the step before.
    texts, values = _typed_fields()
    steps = [texts, values + _typed_columns(), _member_lists()]
    prepared = "".join(
        f"\n\nprepared_{index} as (\n    select\n        *" + "".join(f",\n        {column}" for column in columns)
        + f"\n    from {'objects' if index == 1 else f'prepared_{index - 1}'}\n),"
        for index, columns in enumerate(steps, start=1))
    return f"""
with{source}{prepared}

checked as (
    select
        *,
        {reason_column}
    from prepared_{len(steps)}
)

select
    {outputs}
from checked{valid_only}
"""


def profile_sql(path: Path | str, compression: str = "auto") -> str:
    """Lines the JSON reader sees in a file (blank lines excluded) and how many carry fields not in the schema."""
    return f"""
select
    count(*) as lines,
    count(*) filter (where {_HAS_UNKNOWN}) as lines_with_unknown_fields
from {_read_objects(path, compression)}
"""


def unknown_fields_sql(path: Path | str, compression: str = "auto") -> str:
    """The whole line of every line that carries fields not in the schema, keyed by its generation_id."""
    return f"""
select json ->> 'generation_id' as generation_id, json as extra_fields
from {_read_objects(path, compression)}
where {_HAS_UNKNOWN}
"""


_HAS_UNKNOWN = (f"json_type(json) = 'OBJECT' and len(list_filter(json_keys(json), "
                f"lambda k: not list_contains({_sql_list(KNOWN_FIELDS)}, k))) > 0")
