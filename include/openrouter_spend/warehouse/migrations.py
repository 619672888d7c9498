"""Ordered, checksummed schema migrations (sql/migrations/NNN_name.sql), each applied in its own transaction."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from openrouter_spend.config import settings
from openrouter_spend.warehouse.connection import transaction

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


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
        try:
            with transaction(con):
                con.execute(migration.sql)
                con.execute(
                    "insert into meta.schema_migrations (version, name, checksum) values (?, ?, ?)",
                    [migration.version, migration.name, migration.checksum],
                )
        except Exception as exc:
            raise RuntimeError(f"migration {migration.path.name} failed: {exc}") from exc
        log.info("applied migration %s", migration.path.name)
        newly_applied.append(migration.version)
    return newly_applied
