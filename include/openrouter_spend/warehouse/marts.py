"""Build `marts.*` from staging and the configuration, incrementally and atomically.

Each mart is one SELECT in sql/marts/<name>.sql, which also declares its table's columns: a build creates a
missing table from it and adds or drops columns to match (a reshaped mart is rebuilt for every day), and
records in meta.mart_shapes the key it shaped the table from, so a later build describes the SELECT again only
when the key changed (MartShapes). Table macros shared by marts live in sql/macros/ and are re-created by
every build. Day-partitioned marts are rebuilt only for the days a change can reach (a changed day plus the
windows that read it); small dimensions are rebuilt whole. A mart with an inputs file
(sql/marts/inputs/<name>.sql) also skips those days whose inputs digest equals the one recorded in
meta.mart_day_inputs when they were last built (DayInputs). A build runs in one transaction: a failure leaves
the previous marts untouched.
docs/marts.md has the methods.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from openrouter_spend.config import settings
from openrouter_spend.config.owners import Config, load_config
from openrouter_spend.config.versions import store_config
from openrouter_spend.warehouse.connection import transaction
from openrouter_spend.warehouse.memory import within_process_budget
from openrouter_spend.warehouse.staging import apply_macros, build_staging, create_views, sql_files

log = logging.getLogger(__name__)

DOCUMENTED_SCHEMAS = ("marts", "config")


def _days_after(days: int) -> Callable[[date], date]:
    return lambda day: day + timedelta(days=days)


def _through_month_end_or(days: int) -> Callable[[date], date]:
    def reach(day: date) -> date:
        next_month = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        return max(day + timedelta(days=days), next_month - timedelta(days=1))

    return reach


@dataclass(frozen=True)
class Mart:
    """One mart table: its SQL file, its partition column and how far a changed day reaches."""

    name: str
    partition_column: str | None = None
    reach: Callable[[date], date] = _days_after(0)
    # Whether sql/marts/inputs/<name>.sql digests the inputs of each day (DayInputs).
    input_keyed: bool = False

    @property
    def sql_path(self) -> Path:
        return settings.sql_dir() / "marts" / f"{self.name}.sql"

    @property
    def inputs_path(self) -> Path:
        return settings.sql_dir() / "marts" / "inputs" / f"{self.name}.sql"


# Build order: every mart reads only staging, config and marts listed before it.
MARTS: tuple[Mart, ...] = (
    Mart("dim_model_price_history"),
    Mart("fct_daily_spend", "usage_date"),
    # Per-request marts: a day's duplicates look back one hour, into the day before.
    Mart("fct_generations", "usage_date", _days_after(1), input_keyed=True),
    Mart("rpt_key_usage_daily", "usage_date", _days_after(7)),
    Mart("fct_provider_mix_daily", "usage_date", _days_after(7)),
    Mart("fct_model_mix_daily", "usage_date", _days_after(7)),
    Mart("fct_fallback_daily", "usage_date"),
    Mart("rpt_unit_economics_daily", "usage_date", _days_after(28)),
    # D compares with D-1 and D-7, whose wasted requests read 7 more days back.
    Mart("rpt_spend_change", "usage_date", _days_after(14)),
    Mart("rpt_budget_status_daily", "usage_date", _through_month_end_or(6)),
    Mart("fct_credit_balance", "as_of_date", _days_after(6)),
    Mart("dim_api_key"),
    Mart("dim_model"),
    Mart("dim_annotation"),
    # Reads fct_generations (per-request data) and the gap days of the 30 days before each day.
    Mart("rpt_blind_spots_daily", "usage_date", _days_after(29)),
    # Run rates read the day and the 6 before it; price changes count from a version that started in the 30
    # days ending the day, so the first day of a version reaches 29 days on.
    Mart("rpt_savings_opportunities", "usage_date", _days_after(29)),
)


def available_days(con) -> set[date]:
    """Every usage day present in staging (activity or a credits snapshot).

    Read from the raw partitions: staging's usage_date is the partition (the loader refuses an /activity row
    dated outside it) and its deduplication keeps a row of every partition, so the days are the same without
    typing and deduplicating every /activity row ever loaded (0.3 s of CPU at 365 days)."""
    rows = con.execute(
        "select partition_date from raw.activity union select partition_date from raw.credits"
    ).fetchall()
    return {day for (day,) in rows if day is not None}


def stale_days(con) -> set[date]:
    """Days whose raw partition was loaded after the marts last rebuilt them (late re-pulls included)."""
    rows = con.execute(
        """
        with built as (
            select unnest(rebuilt_days) as usage_date, built_at from marts.build_log
        ),
        last_built as (
            select usage_date, max(built_at) as built_at from built group by usage_date
        )
        select loads.partition_date
        from meta.load_runs as loads
        left join last_built on last_built.usage_date = loads.partition_date
        where loads.status = 'loaded'
        group by loads.partition_date
        having max(loads.loaded_at) > coalesce(max(last_built.built_at), '-infinity'::timestamptz)
        """
    ).fetchall()
    return {day for (day,) in rows}


def _last_built_day(con) -> date | None:
    return con.execute("select max(d) from (select unnest(rebuilt_days) as d from marts.build_log)").fetchone()[0]


def affected_days(mart: Mart, changed: Iterable[date], candidates: Iterable[date]) -> list[date]:
    """The days of `mart` that read any changed day, among the candidate days."""
    changed = sorted(set(changed))
    if not changed:
        return []
    return sorted(day for day in set(candidates) if any(c <= day <= mart.reach(c) for c in changed))


# Qualified names in a SELECT (schema.relation): the tables, views and macros whose shape its columns follow.
_REFERENCE = re.compile(r"\b(raw|meta|config|staging|intermediate|marts)\.([a-z_][a-z0-9_]*)\b", re.IGNORECASE)
SHAPES_TABLE = "meta.mart_shapes"


@dataclass
class MartShapes:
    """What decides a mart table's columns, read once per build, and the key each table was last shaped from.

    A mart's key digests its SELECT, the columns of every relation it names, its own table's columns, the
    table macros, the applied migrations and the DuckDB version: anything that could change what DESCRIBE of
    the SELECT gives, or the table it is compared with. An equal key means the table already has its SELECT's
    columns, so the SELECT is not described again.
    """

    common: str
    columns: dict[str, tuple[tuple[str, str], ...]]
    recorded: dict[str, str] | None  # None: the warehouse has no meta.mart_shapes (shaped on every build)

    @classmethod
    def read(cls, con) -> MartShapes:
        import duckdb

        columns: dict[str, list[tuple[str, str]]] = {}
        for relation, name, column_type in con.execute(
                "select lower(schema_name || '.' || table_name), column_name, data_type from duckdb_columns() "
                "where database_name = current_database() order by schema_name, table_name, column_index").fetchall():
            columns.setdefault(relation, []).append((name, column_type))
        digest = hashlib.sha256(duckdb.__version__.encode())
        for version, checksum in con.execute("select version, checksum from meta.schema_migrations order by 1").fetchall():
            digest.update(f"{version}:{checksum}".encode())
        for path in sql_files("macros"):
            digest.update(path.read_bytes())
        recorded = None
        if con.execute("select count(*) from duckdb_tables() where database_name = current_database() "
                       "and schema_name = 'meta' and table_name = 'mart_shapes'").fetchone()[0]:
            recorded = dict(con.execute(f"select mart_name, shape_key from {SHAPES_TABLE}").fetchall())
        return cls(digest.hexdigest(), {name: tuple(found) for name, found in columns.items()}, recorded)

    def key(self, mart: Mart, sql: str) -> str:
        """The digest of everything the mart's columns follow from, as the warehouse is now."""
        digest = hashlib.sha256(self.common.encode())
        digest.update(sql.encode())
        own = f"marts.{mart.name}"
        for relation in sorted({f"{schema}.{name}".lower() for schema, name in _REFERENCE.findall(sql)} | {own}):
            digest.update(f"\n{relation}:{self.columns.get(relation, ())!r}".encode())
        return digest.hexdigest()

    def is_current(self, mart: Mart, sql: str) -> bool:
        """True when the table was shaped from exactly what its key digests now."""
        return self.recorded is not None and self.recorded.get(mart.name) == self.key(mart, sql)

    def record(self, con, mart: Mart, sql: str) -> None:
        """Note the table's new columns and store the key it is now shaped from."""
        self.columns[f"marts.{mart.name}"] = tuple(con.execute(
            "select column_name, data_type from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'marts' and table_name = ? order by column_index", [mart.name]).fetchall())
        if self.recorded is None:
            return
        key = self.key(mart, sql)
        con.execute(f"insert or replace into {SHAPES_TABLE} (mart_name, shape_key, shaped_at) "
                    "values (?, ?, current_timestamp)", [mart.name, key])
        self.recorded[mart.name] = key


INPUTS_TABLE = "meta.mart_day_inputs"


@dataclass
class DayInputs:
    """The inputs digest each day of the input-keyed marts was last built from (meta.mart_day_inputs).

    A day's key digests the mart's SELECT and its inputs file, the macros, migrations and DuckDB version
    (MartShapes.common) and what the inputs file reads for the day; an equal key means rebuilding the day
    would write the rows it already has.
    """

    common: str
    recorded: dict[tuple[str, date], str] | None  # None: the warehouse has no meta.mart_day_inputs

    @classmethod
    def read(cls, con, common: str) -> DayInputs:
        if not con.execute("select count(*) from duckdb_tables() where database_name = current_database() "
                           "and schema_name = 'meta' and table_name = 'mart_day_inputs'").fetchone()[0]:
            return cls(common, None)
        rows = con.execute(f"select mart_name, usage_date, input_key from {INPUTS_TABLE}").fetchall()
        return cls(common, {(name, day): key for name, day, key in rows})

    def keys(self, con, mart: Mart, days: list[date]) -> dict[date, str]:
        """The inputs key of each of `days`, as the warehouse is now (the marts before `mart` already built)."""
        if self.recorded is None or not mart.input_keyed or not days:
            return {}
        inputs_sql = mart.inputs_path.read_text()
        prefix = hashlib.sha256(self.common.encode())
        prefix.update(mart.sql_path.read_bytes())
        prefix.update(inputs_sql.encode())
        con.execute("set variable mart_days = cast(? as date[])", [days])
        try:
            rows = con.execute(inputs_sql).fetchall()
        except Exception as exc:
            raise RuntimeError(f"digesting the inputs of marts.{mart.name} ({mart.inputs_path.name}) "
                               f"failed: {exc}") from exc
        keys = {}
        for day, input_key in rows:
            digest = prefix.copy()
            digest.update(input_key.encode())
            keys[day] = digest.hexdigest()
        return keys

    def unchanged(self, mart: Mart, keys: dict[date, str]) -> set[date]:
        """The days whose recorded key equals the key they have now."""
        if self.recorded is None:
            return set()
        return {day for day, key in keys.items() if self.recorded.get((mart.name, day)) == key}

    def record(self, con, mart: Mart, keys: dict[date, str], *, replace_all: bool) -> None:
        """Store the keys of the days just built (after a whole-table rebuild, only theirs are kept)."""
        if self.recorded is None or not mart.input_keyed:
            return
        if replace_all:
            con.execute(f"delete from {INPUTS_TABLE} where mart_name = ?", [mart.name])
        if keys:
            con.execute(f"insert or replace into {INPUTS_TABLE} (mart_name, usage_date, input_key, built_at) "
                        "select ?, unnest(cast(? as date[])), unnest(cast(? as varchar[])), current_timestamp",
                        [mart.name, list(keys), list(keys.values())])
        self.recorded.update({(mart.name, day): key for day, key in keys.items()})


def ensure_mart_table(con, mart: Mart, shapes: MartShapes | None = None) -> bool:
    """Shape marts.<name> after its SELECT: create it when missing, add the columns the SELECT makes that the
    table lacks and drop those it no longer makes; True when anything changed (its days all need building).

    The SELECT is the one declaration of a mart's columns: a new column takes the type the SELECT gives it
    (cast there when a sum would widen it). Tables the migrations created keep their types and constraints.
    With `shapes`, a table whose key is unchanged since it was last shaped is left as it is (no DESCRIBE).
    """
    sql = mart.sql_path.read_text()
    if shapes is not None and shapes.is_current(mart, sql):
        return False
    con.execute("set variable mart_days = cast([] as date[])")
    table = f"marts.{mart.name}"
    existing = [name for (name,) in con.execute(
        "select column_name from duckdb_columns() where schema_name = 'marts' and table_name = ?",
        [mart.name]).fetchall()]
    changes = []
    try:
        if not existing:
            con.execute(f"create table {table} as\n{sql}\nwith no data")
            changes.append(f"created {table}")
        else:
            made = {name: column_type for name, column_type, *_ in con.execute(f"describe\n{sql}").fetchall()}
            for name, column_type in made.items():
                if name not in existing:
                    con.execute(f"alter table {table} add column {name} {column_type}")
                    changes.append(f"added {table}.{name} {column_type}")
            for name in existing:
                if name not in made:
                    con.execute(f"alter table {table} drop column {name}")
                    changes.append(f"dropped {table}.{name}")
    except Exception as exc:
        raise RuntimeError(f"shaping {table} after {mart.sql_path.name} failed: {exc}") from exc
    for change in changes:
        log.info("%s, from its SELECT in %s", change, mart.sql_path.name)
    if shapes is not None:
        shapes.record(con, mart, sql)
    return bool(changes)


def shape_mart_tables(con) -> None:
    """Give every mart table the columns its SELECT makes, without building any day (macros and the
    intermediate views first, which the SELECTs read)."""
    apply_macros(con)
    create_views(con, "intermediate")
    shapes = MartShapes.read(con)
    for mart in MARTS:
        ensure_mart_table(con, mart, shapes)


def _rebuild_mart(con, mart: Mart, days: list[date], *, replace_all: bool) -> int:
    """Replace the mart's rows for `days` (every row for dimensions or with replace_all); returns rows written."""
    if mart.partition_column is not None and not days and not replace_all:
        return 0
    con.execute("set variable mart_days = cast(? as date[])", [days])
    if replace_all or mart.partition_column is None:
        con.execute(f"delete from marts.{mart.name}")
    else:
        con.execute(f"delete from marts.{mart.name} "
                    f"where list_contains(getvariable('mart_days'), {mart.partition_column})")
    if mart.partition_column is not None and not days:
        return 0
    try:
        written = con.execute(f"insert into marts.{mart.name} by name\n{mart.sql_path.read_text()}").fetchone()[0]
    except Exception as exc:
        raise RuntimeError(f"building marts.{mart.name} from {mart.sql_path.name} failed: {exc}") from exc
    return int(written)


def _build(con, requested: set[date], *, full: bool, restate_config: bool, config: Config) -> dict[str, int]:
    started = time.monotonic()
    with within_process_budget(con), transaction(con):
        last_built = _last_built_day(con)
        version_id = store_config(con, config, last_built + timedelta(days=1) if last_built else None,
                                  restate=restate_config)
        apply_macros(con)
        # Views the rules read (sql/intermediate/): re-created so they always run this checkout's text.
        create_views(con, "intermediate")
        available = available_days(con)
        changed = requested if full else requested | stale_days(con)
        counts: dict[str, int] = {}
        rebuilt_days: list[date] = []
        shapes = MartShapes.read(con)
        inputs = DayInputs.read(con, shapes.common)
        for mart in MARTS:
            reshaped = ensure_mart_table(con, mart, shapes)
            replace_all = full or reshaped
            days = sorted(available) if replace_all else affected_days(mart, changed, available | changed)
            if mart.name == "fct_daily_spend":
                rebuilt_days = [day for day in days if day in available]
            keys = inputs.keys(con, mart, days)
            if not replace_all:
                unchanged = inputs.unchanged(mart, keys)
                if unchanged:
                    log.info("marts.%s: %s left as built (inputs unchanged)", mart.name, _day_span(sorted(unchanged)))
                days = [day for day in days if day not in unchanged]
                keys = {day: key for day, key in keys.items() if day not in unchanged}
            counts[mart.name] = _rebuild_mart(con, mart, days, replace_all=replace_all)
            inputs.record(con, mart, keys, replace_all=replace_all)
        apply_comments(con)
        build_id = con.execute("select coalesce(max(build_id), 0) + 1 from marts.build_log").fetchone()[0]
        con.execute(
            "insert into marts.build_log (build_id, built_at, build_kind, requested_days, rebuilt_days, "
            "config_version_id, row_counts) values (?, current_timestamp, ?, cast(? as date[]), "
            "cast(? as date[]), ?, ?)",
            [build_id, "full" if full else "incremental", sorted(requested), rebuilt_days, version_id,
             json.dumps(counts)],
        )
    log.info("built marts in %.1fs (config version %s, days %s): %s", time.monotonic() - started, version_id,
             _day_span(rebuilt_days), counts)
    return counts


def _day_span(days: list[date]) -> str:
    if not days:
        return "none"
    return days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)})"


def build_marts(con, days: list[date], *, config_dir: Path | None = None,
                config: Config | None = None) -> dict[str, int]:
    """Rebuild what `days` and stale days reach in one transaction (the schema is current); rows written per mart.

    `config` is the parsed configuration of the run; without it the configuration folder is read.
    """
    config = config or load_config(config_dir)
    return _build(con, set(days), full=False, restate_config=False, config=config)


def rebuild_all(con, *, restate_config: bool = False, config_dir: Path | None = None) -> dict[str, int]:
    """Rebuild staging views and every mart from raw for every day in staging (the schema is current)."""
    config = load_config(config_dir)
    build_staging(con)
    return _build(con, available_days(con), full=True, restate_config=restate_config, config=config)


def _schema_docs() -> dict[str, dict]:
    path = settings.sql_dir() / "marts" / "schema.yml"
    return _parsed_yaml(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _parsed_yaml(path: Path, _mtime_ns: int) -> dict:
    import yaml

    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _quoted(text: str) -> str:
    return "'" + " ".join(text.split()).replace("'", "''") + "'"


def apply_comments(con) -> None:
    """COMMENT ON every table and column of marts.* and config.* from sql/marts/schema.yml; drift is an error."""
    docs = _schema_docs()
    for schema in DOCUMENTED_SCHEMAS:
        tables = dict(con.execute(
            "select table_name, comment from duckdb_tables() where schema_name = ?", [schema]).fetchall())
        columns: dict[str, dict[str, str | None]] = {}
        for table, column, comment in con.execute(
                "select table_name, column_name, comment from duckdb_columns() where schema_name = ?",
                [schema]).fetchall():
            columns.setdefault(table, {})[column] = comment
        documented = docs.get(schema) or {}
        missing = sorted(set(tables) - set(documented))
        if missing:
            raise RuntimeError(f"sql/marts/schema.yml documents no {schema}.{', '.join(missing)}")
        for table, table_doc in documented.items():
            if table not in tables:
                raise RuntimeError(f"sql/marts/schema.yml documents {schema}.{table}, which does not exist")
            described = table_doc.get("columns") or {}
            undocumented = [c for c in columns[table] if c not in described]
            unknown = [c for c in described if c not in columns[table]]
            if undocumented or unknown:
                raise RuntimeError(f"sql/marts/schema.yml is out of date for {schema}.{table}: undocumented "
                                   f"{undocumented or 'none'}, no such column {unknown or 'none'}")
            description = " ".join(table_doc["description"].split())
            if tables[table] != description:
                con.execute(f"comment on table {schema}.{table} is {_quoted(description)}")
            for column, entry in described.items():
                # A column with gate checks is a mapping (sql/marts/schema.yml header); its text is its description.
                text = entry["description"] if isinstance(entry, dict) else entry
                if columns[table][column] != " ".join(str(text).split()):
                    con.execute(f"comment on column {schema}.{table}.{column} is {_quoted(str(text))}")


def table_docs() -> dict[str, dict]:
    """The documentation of every marts and config table, as written in sql/marts/schema.yml."""
    return _schema_docs()

