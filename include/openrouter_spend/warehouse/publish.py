"""Publish the analysts' copy: the warehouse copied to a read-only file that replaces the old one atomically."""

from __future__ import annotations

import logging
import os
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
        with connect(temporary) as con:
            con.execute(f"attach '{_sql_path(source)}' as live (read_only)")
            target_catalog = con.execute("select current_database()").fetchone()[0]
            con.execute(f'copy from database live to "{target_catalog}"')
            con.execute("detach live")
            con.execute("checkpoint")
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


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
