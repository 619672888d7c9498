"""App request logs (product.md §5.4): incremental, idempotent ingestion of JSONL / JSONL.gz files into DuckDB.

Applications drop files into `$OPENROUTER_SPEND_HOME/landing/requests/` (any sub-folder; names starting
with '.' are ignored, so write to a dot-file and rename). `ingest(con)` loads each new or changed file in
one transaction, streaming, with no Python loop over lines:

1. DuckDB's parallel `read_json` types the known fields as JSON values; SQL compiled from
   schemas/request-log.schema.json checks every field (types, bounded strings and lists, the members of
   `usage` with their ranges, a plausible `created_at`) and the valid lines go to `raw.request_log`. Tests
   check the SQL and the schema agree line for line; no value a line can carry fails a later build.
2. One `read_json_objects` pass counts the lines and finds lines with fields the schema does not name; those
   lines are kept whole in `raw.request_log.extra_fields`.
3. Only when some line was not loaded, an ordered, numbered line-by-line pass (`read_csv` with one VARCHAR
   column) finds the bad lines and writes them with file, line number, reason and text to
   `raw.request_log_quarantine` and `$OPENROUTER_SPEND_HOME/quarantine/requests/<file>.quarantine.jsonl`.

A file whose size and mtime are unchanged is skipped; a changed file (different sha256) replaces its rows; a
file that cannot be read at all is recorded (meta.request_log_files, quarantine) and retried when it
changes; a file removed from the landing area keeps its rows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings
from openrouter_spend.ingest.request_log_sql import MAX_LINE_BYTES, profile_sql, scan_sql, unknown_fields_sql
from openrouter_spend.warehouse.memory import within_process_budget

log = logging.getLogger(__name__)

LOG_SUFFIXES = (".jsonl", ".jsonl.gz")
# DuckDB memory for one file load at most; less when the process budget leaves less (warehouse.memory).
_LOAD_MEMORY_LIMIT = "768MB"


def request_log_root() -> Path:
    """Where applications drop request logs (always local: DuckDB reads them from this worker's disk)."""
    return settings.paths().request_logs


def quarantine_root() -> Path:
    """Where quarantined lines are written, one .quarantine.jsonl per source file."""
    return settings.paths().home / "quarantine" / "requests"


def _unreadable_errors() -> tuple[type[Exception], ...]:
    """DuckDB errors that mean "this file's bytes cannot be read", as opposed to a bug in our SQL."""
    import duckdb

    return (duckdb.InvalidInputException, duckdb.IOException, duckdb.ConversionException)


@dataclass(frozen=True)
class LogFile:
    """A request-log file in the landing area."""

    path: Path
    relative: str
    size_bytes: int
    mtime_ns: int

    @property
    def compression(self) -> str:
        return "gzip" if self.relative.endswith(".gz") else "none"

    @property
    def modified_at(self) -> datetime:
        """When the file was last written (its mtime): no request in it can be much later."""
        return datetime.fromtimestamp(self.mtime_ns / 1e9, tz=UTC)


def discover_files(root: Path) -> list[LogFile]:
    """Every *.jsonl / *.jsonl.gz under root (recursively), skipping dot-files and dot-folders, by path."""
    if not root.exists():
        return []
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in relative.split("/")) or not path.is_file():
            continue
        if not relative.endswith(LOG_SUFFIXES):
            continue
        stat = path.stat()
        found.append(LogFile(path, relative, stat.st_size, stat.st_mtime_ns))
    return found


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes as stored (compressed files hash their compressed bytes)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass
class FileOutcome:
    """What one ingest did with one file."""

    source_file: str
    action: str  # loaded | reloaded | unchanged | touched | failed | changed_while_reading
    loaded_rows: int = 0
    quarantined_rows: int = 0
    usage_dates: tuple[str, ...] = ()
    error: str | None = None


class _Digest(threading.Thread):
    """Hashes a file in the background while DuckDB reads it (DuckDB releases the GIL)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path = path
        self.value: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = file_sha256(self.path)
        except BaseException as exc:  # surfaced by result()
            self.error = exc

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


def ingest(con, root: Path | None = None, *, quarantine_dir: Path | None = None) -> dict[str, Any]:
    """Load every new or changed request-log file, one transaction per file; returns what happened per file."""
    root = Path(root or request_log_root())
    quarantine_dir = Path(quarantine_dir or quarantine_root())
    known = {
        row[0]: {"size_bytes": row[1], "mtime_ns": row[2], "sha256": row[3], "status": row[4]}
        for row in con.execute(
            "select source_file, size_bytes, mtime_ns, sha256, status from meta.request_log_files").fetchall()
    }
    outcomes: list[FileOutcome] = []
    for log_file in discover_files(root):
        previous = known.get(log_file.relative)
        if previous and (previous["size_bytes"], previous["mtime_ns"]) == (log_file.size_bytes, log_file.mtime_ns):
            outcomes.append(FileOutcome(log_file.relative, "unchanged"))
            continue
        if previous and previous["size_bytes"] == log_file.size_bytes \
                and file_sha256(log_file.path) == previous["sha256"]:
            con.execute("update meta.request_log_files set mtime_ns = ? where source_file = ?",
                        [log_file.mtime_ns, log_file.relative])
            outcomes.append(FileOutcome(log_file.relative, "touched"))
            continue
        outcomes.append(_load_file(con, log_file, previous is not None, quarantine_dir))
    summary = {
        "files": len(outcomes),
        "loaded_files": sum(o.action in ("loaded", "reloaded") for o in outcomes),
        "unchanged_files": sum(o.action in ("unchanged", "touched") for o in outcomes),
        "failed_files": sum(o.action in ("failed", "changed_while_reading") for o in outcomes),
        "loaded_rows": sum(o.loaded_rows for o in outcomes),
        "quarantined_rows": sum(o.quarantined_rows for o in outcomes),
        "usage_dates": sorted({d for o in outcomes for d in o.usage_dates}),
        "outcomes": [asdict(o) for o in outcomes if o.action not in ("unchanged", "touched")],
    }
    if summary["failed_files"] or summary["quarantined_rows"]:
        log.warning("request logs: %d file(s) failed, %d line(s) quarantined under %s", summary["failed_files"],
                    summary["quarantined_rows"], quarantine_dir)
    log.info("request logs: %d file(s) loaded (%d rows), %d unchanged", summary["loaded_files"],
             summary["loaded_rows"], summary["unchanged_files"])
    return summary


def _load_file(con, log_file: LogFile, is_reload: bool, quarantine_dir: Path) -> FileOutcome:
    """Replace one file's rows and quarantined lines in one transaction (a failure leaves the old ones)."""
    import duckdb

    digest = _Digest(log_file.path)
    digest.start()
    source = [log_file.relative]
    with within_process_budget(con, ceiling=_LOAD_MEMORY_LIMIT):
        insertion_order = con.execute("select current_setting('preserve_insertion_order')").fetchone()[0]
        # Row order in raw.request_log carries no meaning; not keeping it lets DuckDB insert in parallel.
        con.execute("set preserve_insertion_order = false")
        try:
            con.execute("begin transaction")
            previous_days = _days_of(con, log_file.relative)
            con.execute("delete from raw.request_log where source_file = ?", source)
            con.execute("delete from raw.request_log_quarantine where source_file = ?", source)
            try:
                try:
                    loaded, lines, quarantined, error = _insert_file(con, log_file)
                except _NumberingFailed as failure:  # DuckDB aborted the transaction: load the valid lines again
                    con.execute("rollback")
                    con.execute("begin transaction")
                    con.execute("delete from raw.request_log where source_file = ?", source)
                    con.execute("delete from raw.request_log_quarantine where source_file = ?", source)
                    loaded, lines, quarantined, error = _insert_file(con, log_file, numbering_error=failure.error)
            except _unreadable_errors() as exc:  # the file as a whole cannot be read: record it, never drop it silently
                con.execute("rollback")
                con.execute("begin transaction")
                previous_days = _days_of(con, log_file.relative)
                con.execute("delete from raw.request_log where source_file = ?", source)
                con.execute("delete from raw.request_log_quarantine where source_file = ?", source)
                loaded, lines, quarantined, error = 0, None, 1, _file_error(log_file, exc)
                con.execute("insert into raw.request_log_quarantine values (?, null, ?, null, current_timestamp)",
                            [log_file.relative, error])
            sha256 = digest.result()
            after = log_file.path.stat()
            if (after.st_size, after.st_mtime_ns) != (log_file.size_bytes, log_file.mtime_ns):
                con.execute("rollback")
                log.warning("%s changed while it was being read; the next run loads it", log_file.relative)
                return FileOutcome(log_file.relative, "changed_while_reading")
            days = _days_of(con, log_file.relative)
            con.execute(
                """
                insert into meta.request_log_files as files values
                    (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp, current_timestamp, 1)
                on conflict (source_file) do update set
                    size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
                    status = excluded.status, line_count = excluded.line_count, loaded_rows = excluded.loaded_rows,
                    quarantined_rows = excluded.quarantined_rows, first_usage_date = excluded.first_usage_date,
                    last_usage_date = excluded.last_usage_date, error = excluded.error,
                    loaded_at = excluded.loaded_at, load_count = files.load_count + 1
                """,
                [log_file.relative, log_file.size_bytes, log_file.mtime_ns, sha256,
                 "failed" if loaded == 0 and error else "loaded", lines, loaded, quarantined,
                 days[0] if days else None, days[-1] if days else None, error],
            )
            record_change(con, set(days) | set(previous_days), f"request_log:{log_file.relative}")
            con.execute("commit")
        except BaseException:
            try:
                con.execute("rollback")
            except duckdb.Error:  # the transaction is already closed
                pass
            raise
        finally:
            con.execute(f"set preserve_insertion_order = {str(insertion_order).lower()}")
            digest.join()
    _write_quarantine_file(con, log_file.relative, quarantine_dir)
    action = "failed" if loaded == 0 and error else ("reloaded" if is_reload else "loaded")
    return FileOutcome(log_file.relative, action, int(loaded), int(quarantined),
                       tuple(d.isoformat() for d in days), error)


class _NumberingFailed(Exception):
    """The numbered scan of a file with bad lines failed (e.g. not UTF-8); carries the reason to record."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


def _insert_file(con, log_file: LogFile, numbering_error: str | None = None) -> tuple[int, int, int, str | None]:
    """Load the valid lines, keep unknown fields, quarantine the bad lines; (loaded, lines, quarantined, error)."""
    compression = log_file.compression
    loaded = con.execute(
        f"""
        insert into raw.request_log by name
        select
            ? as source_file, generation_id, created_at,
            cast(timezone('UTC', created_at) as date) as usage_date, api_key_hash, project, workflow,
            requested_model, requested_models, accepted, retry_of, request_fingerprint,
            openrouter_metadata, usage, current_timestamp as loaded_at
        from ({scan_sql(log_file.path, compression, file_modified_at=log_file.modified_at)})
        """,
        [log_file.relative],
    ).fetchone()[0]
    lines, with_unknown = con.execute(profile_sql(log_file.path, compression)).fetchone()
    if with_unknown:
        con.execute(
            f"""
            update raw.request_log set extra_fields = unknown.extra_fields
            from ({unknown_fields_sql(log_file.path, compression)}) as unknown
            where raw.request_log.source_file = ? and raw.request_log.generation_id = unknown.generation_id
            """,
            [log_file.relative],
        )
    if lines == loaded:
        return loaded, lines, 0, None
    if numbering_error is None:
        try:
            quarantined = con.execute(
                f"""
                insert into raw.request_log_quarantine
                select ?, line_number, reason, bad_line, current_timestamp
                from ({scan_sql(log_file.path, compression, numbered=True, file_modified_at=log_file.modified_at)})
                where reason is not null
                """,
                [log_file.relative],
            ).fetchone()[0]
            return loaded, lines, quarantined, None
        except _unreadable_errors() as exc:
            raise _NumberingFailed(_file_error(log_file, exc)) from exc
    # The valid lines are loaded; say how many lines could not be, and why.
    error = f"{lines - loaded} line(s) could not be loaded: {numbering_error}"
    con.execute("insert into raw.request_log_quarantine values (?, null, ?, null, current_timestamp)",
                [log_file.relative, error])
    return loaded, lines, lines - loaded, error


def _days_of(con, source_file: str) -> list[date]:
    """Usage days the file's loaded rows cover."""
    return [day for (day,) in con.execute(
        "select distinct usage_date from raw.request_log where source_file = ? order by 1", [source_file]).fetchall()]


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")


def _file_error(log_file: LogFile, exc: Exception) -> str:
    """A one-paragraph reason naming the file, from DuckDB's message (which names the line)."""
    message = " ".join(str(exc).split())
    if "unicode" in message.lower() or "utf-8" in message.lower():
        kind = "the file is not UTF-8 text"
    elif "gzip" in message.lower() or "compress" in message.lower():
        kind = "the file is not a readable gzip stream"
    elif "maximum line size" in message.lower() or "max_line_size" in message.lower():
        kind = f"a line is longer than {MAX_LINE_BYTES} bytes"
    else:
        kind = "the file cannot be read"
    return f"{log_file.relative}: {kind}: {message[:400]}"


def _write_quarantine_file(con, source_file: str, quarantine_dir: Path) -> Path | None:
    """Rewrite the file's quarantine JSONL (one object per bad line) or remove it when nothing is quarantined."""
    target = quarantine_dir / (source_file.replace("/", "__") + ".quarantine.jsonl")
    rows = con.execute(
        "select count(*) from raw.request_log_quarantine where source_file = ?", [source_file]).fetchone()[0]
    if not rows:
        target.unlink(missing_ok=True)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name("." + target.name + ".tmp")
    con.execute(
        f"""
        copy (
            select source_file as file, line_number as line, reason, line as text, quarantined_at
            from raw.request_log_quarantine where source_file = '{source_file.replace("'", "''")}'
            order by line_number nulls first
        ) to '{_literal(temporary)}' (format json)
        """
    )
    os.replace(temporary, target)
    return target


def stale_days(con) -> list[date]:
    """Usage days whose per-request inputs changed after the last mart build; build_marts should include them."""
    rows = con.execute(
        """
        select distinct usage_date from meta.request_log_changes
        where changed_at > coalesce((select max(built_at) from marts.build_log), '-infinity'::timestamptz)
        order by usage_date
        """
    ).fetchall()
    return [day for (day,) in rows]


def record_change(con, days: Iterable[date], source: str) -> None:
    """Note that per-request inputs of these usage days changed (the next mart build picks them up)."""
    days = sorted(set(days))
    if days:
        con.execute("insert into meta.request_log_changes select unnest(cast(? as date[])), current_timestamp, ?",
                    [days, source])
