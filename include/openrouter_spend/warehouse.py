"""The DuckDB warehouse: one connection helper, ordered schema migrations, and the staging views."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from openrouter_spend import settings

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


@contextmanager
def connect(path: Path | None = None, *, read_only: bool = False) -> Iterator:
    """Open the warehouse late, close it always; the one place that owns DuckDB's config."""
    import duckdb

    target = path or settings.paths().warehouse
    if not read_only:
        target.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(target), read_only=read_only, config=dict(DUCKDB_CONFIG))
    try:
        con.execute("set timezone = 'UTC'")
        # DuckDB would otherwise cache up to 80% of RAM; a bounded pool keeps a day's build under 1 GiB.
        con.execute(f"set memory_limit = '{os.environ.get('OPENROUTER_SPEND_DUCKDB_MEMORY_LIMIT') or '700MB'}'")
        yield con
    finally:
        con.close()


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file in sql/migrations."""

    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover_migrations(folder: Path | None = None) -> list[Migration]:
    """Migration files in version order; a malformed or duplicate number is an error."""
    folder = folder or settings.sql_dir() / "migrations"
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"{path}: migration files must be named NNN_lowercase_words.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"{path}: migration number {version:03d} is also used by {found[version].path.name}")
        found[version] = Migration(version, path.stem, path)
    return [found[v] for v in sorted(found)]


def migrate(con, folder: Path | None = None) -> list[int]:
    """Apply pending migrations in order, each inside its own transaction; returns the applied versions."""
    con.execute("create schema if not exists meta")
    con.execute(
        """
        create table if not exists meta.schema_migrations (
            version integer primary key,
            name varchar not null,
            checksum varchar not null,
            applied_at timestamptz not null default current_timestamp
        )
        """
    )
    applied = {
        version: checksum
        for version, checksum in con.execute("select version, checksum from meta.schema_migrations").fetchall()
    }
    newly_applied = []
    for migration in discover_migrations(folder):
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                log.warning("migration %s changed after it was applied; edits to applied migrations are "
                            "ignored, add a new migration instead", migration.path.name)
            continue
        con.execute("begin transaction")
        try:
            con.execute(migration.sql)
            con.execute(
                "insert into meta.schema_migrations (version, name, checksum) values (?, ?, ?)",
                [migration.version, migration.name, migration.checksum],
            )
            con.execute("commit")
        except Exception as exc:
            con.execute("rollback")
            raise RuntimeError(f"migration {migration.path.name} failed: {exc}") from exc
        log.info("applied migration %s", migration.path.name)
        newly_applied.append(migration.version)
    return newly_applied


def sql_files(layer: str) -> list[Path]:
    """The SQL files of one layer folder (staging, marts), in name order."""
    return sorted((settings.sql_dir() / layer).glob("*.sql"))


def dependency_order(files: list[Path], schema: str) -> list[Path]:
    """Files ordered so that each view comes after the views of `schema` it reads (by name otherwise)."""
    by_name = {path.stem: path for path in files}
    reads = {
        name: set(re.findall(rf"\b{schema}\.([a-z0-9_]+)", path.read_text())) & set(by_name) - {name}
        for name, path in by_name.items()
    }
    ordered: list[Path] = []
    done: set[str] = set()
    while len(done) < len(by_name):
        ready = sorted(name for name in by_name if name not in done and reads[name] <= done)
        if not ready:
            cycle = sorted(set(by_name) - done)
            raise ValueError(f"{schema} views depend on each other in a cycle: {', '.join(cycle)}")
        for name in ready:
            ordered.append(by_name[name])
            done.add(name)
    return ordered


def build_staging(con) -> list[str]:
    """(Re)create every staging view in one transaction, dependencies first; returns the view names."""
    names = []
    con.execute("begin transaction")
    try:
        con.execute("create schema if not exists staging")
        for path in dependency_order(sql_files("staging"), "staging"):
            con.execute(f"create or replace view staging.{path.stem} as\n{path.read_text()}")
            names.append(path.stem)
        con.execute("commit")
    except Exception as exc:
        con.execute("rollback")
        raise RuntimeError(f"building staging views failed: {exc}") from exc
    return names


def table_counts(con, schemas: tuple[str, ...] = ("raw", "staging", "marts", "meta")) -> dict[str, int]:
    """Row count of every table and view in the given schemas."""
    rows = con.execute(
        "select table_schema, table_name from information_schema.tables where table_schema in "
        f"({', '.join('?' for _ in schemas)}) order by 1, 2",
        list(schemas),
    ).fetchall()
    return {
        f"{schema}.{name}": con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]
        for schema, name in rows
    }
