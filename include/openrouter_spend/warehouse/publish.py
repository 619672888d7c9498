"""Publish the analysts' copy: the warehouse copied to a read-only file that replaces the old one atomically.

The copy is the checkpointed warehouse file itself, copied byte for byte by the kernel (shutil.copyfile):
re-encoding every table into a new database (`COPY FROM DATABASE`) cost time and memory in proportion to the
whole history every day, where the file copy costs only its I/O. The copy is checked against the warehouse
(every table's row count, every view and macro) before it replaces the old one.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from openrouter_spend.config import settings
from openrouter_spend.warehouse.connection import connect

log = logging.getLogger(__name__)


def publish_warehouse(source_path: Path | None = None, target_path: Path | None = None) -> Path:
    """Copy the warehouse to the read-only analyst file, replaced atomically; call with no connection to the source."""
    source = Path(source_path or settings.paths().warehouse)
    target = Path(target_path or settings.paths().published / "warehouse.duckdb")
    if not source.exists():
        raise FileNotFoundError(f"no warehouse to publish at {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        # The open connection holds the file's write lock: nothing commits between the checkpoint and the copy.
        with connect(source) as live:
            live.execute("force checkpoint")  # every committed change is in the file, none only in the WAL
            expected = catalog_fingerprint(live)
            shutil.copyfile(source, temporary)
        with connect(temporary, read_only=True) as copy:
            copied = catalog_fingerprint(copy)
        if copied != expected:
            differing = sorted(set(copied.items()) ^ set(expected.items()))
            raise RuntimeError(f"the copy of {source} differs from it ({differing[:5]}); {target} is unchanged")
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        temporary.chmod(0o444)
        os.replace(temporary, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        temporary.unlink(missing_ok=True)
        temporary.with_name(temporary.name + ".wal").unlink(missing_ok=True)
    log.info("published %s to %s in %.1fs", source, target, time.monotonic() - started)
    return target


def catalog_fingerprint(con) -> dict[str, object]:
    """Every table's row count and every view's and macro's text, by qualified name: what a copy must match."""
    fingerprint: dict[str, object] = {}
    for schema, name in con.execute(
            "select schema_name, table_name from duckdb_tables() where not internal and not temporary "
            "and database_name = current_database() order by all").fetchall():
        fingerprint[f"table {schema}.{name}"] = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]
    for schema, name, text in con.execute(
            "select schema_name, view_name, sql from duckdb_views() where not internal and not temporary "
            "and database_name = current_database()").fetchall():
        fingerprint[f"view {schema}.{name}"] = text
    for schema, name, text in con.execute(
            "select schema_name, function_name, string_agg(coalesce(macro_definition, ''), ';' "
            "order by macro_definition) from duckdb_functions() where not internal "
            "and database_name = current_database() and function_type in ('macro', 'table_macro') "
            "group by schema_name, function_name").fetchall():
        fingerprint[f"macro {schema}.{name}"] = text
    return fingerprint
