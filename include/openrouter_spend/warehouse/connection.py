"""One connection helper (the one place that owns DuckDB's configuration) and one transaction helper."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openrouter_spend.config import settings

log = logging.getLogger(__name__)

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


@contextmanager
def transaction(con) -> Iterator:
    """Run the block in one transaction: commit when it ends, roll back and re-raise when it raises."""
    con.execute("begin transaction")
    try:
        yield con
        con.execute("commit")
    except BaseException:  # an interrupt too: nothing half-written stays behind
        try:
            con.execute("rollback")
        except Exception as exc:  # a failed commit may have ended the transaction; the first error is the news
            log.warning("rollback after a failed transaction: %s", exc)
        raise


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
