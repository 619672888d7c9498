"""DuckDB's share of a process's memory budget, for the statements that read a day's million rows.

The warehouse connection bounds DuckDB's buffer pool (OPENROUTER_SPEND_DUCKDB_MEMORY_LIMIT), but a task shares
its process with what is already loaded there (the interpreter, Airflow, the libraries earlier tasks
imported: 450-500 MiB in `openrouter-spend run`). Around a large statement the pool is lowered to what the
process budget leaves beside that, so the process as a whole stays within the budget; DuckDB spills the rest
to its temporary directory (the fct_generations build of a 1,000,000-request day uses the same CPU time at
500 MB as at 700 MB). DuckDB's limit bounds its buffer manager only, and some operators allocate beside it
(DuckDB's out-of-memory guide), so part of DuckDB's share is kept back for those allocations.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

BUDGET_ENV = "OPENROUTER_SPEND_PROCESS_MEMORY_BUDGET"
# Of DuckDB's share, what is kept back for its allocations outside the buffer manager. On the large
# organisation's day those came to 14-30 MiB over pools of about 550 MiB (3-6 %, bench/FINDINGS.md); a tenth
# leaves twice that.
OUTSIDE_POOL_FRACTION = 0.10
_UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes in a size such as '1GiB', '700MB' or DuckDB's '667.5 MiB'; ValueError naming the text otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a memory size: {text!r} (expected e.g. 1GiB or 700MB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def process_budget_bytes() -> int:
    """The resident memory one process may use (OPENROUTER_SPEND_PROCESS_MEMORY_BUDGET, default 1 GiB)."""
    text = os.environ.get(BUDGET_ENV) or "1GiB"
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ValueError(f"{BUDGET_ENV}: {exc}") from None


def duckdb_share(con) -> int:
    """Bytes the budget leaves for DuckDB's buffer manager: the budget less what the process holds outside DuckDB
    now, less OUTSIDE_POOL_FRACTION of that for DuckDB's own allocations beside the pool."""
    import psutil

    resident = psutil.Process().memory_info().rss
    held = con.execute("select coalesce(sum(memory_usage_bytes), 0) from duckdb_memory()").fetchone()[0]
    left = process_budget_bytes() - max(resident - int(held), 0)
    return int(left * (1 - OUTSIDE_POOL_FRACTION)) if left > 0 else left


def limit_within_budget(con, ceiling: str | None = None) -> int:
    """DuckDB's memory limit in bytes for a large statement: its share of the process budget, never above
    `ceiling` (default: the connection's limit) and never below half of it (a process already past its
    budget gets a warning, not a statement that cannot run)."""
    top = parse_size(ceiling or con.execute("select current_setting('memory_limit')").fetchone()[0])
    share = duckdb_share(con)
    if share < top // 2:
        log.warning("this process holds %d MiB outside DuckDB: its %d MiB budget leaves DuckDB %d MiB, less than "
                    "half of %d MiB", (process_budget_bytes() - share) // 2**20, process_budget_bytes() // 2**20,
                    max(share, 0) // 2**20, top // 2**20)
    return min(top, max(share, top // 2))


@contextmanager
def within_process_budget(con, ceiling: str | None = None) -> Iterator[None]:
    """Lower DuckDB's memory limit to its share of the process budget (at most `ceiling`) for the block;
    restore it after."""
    configured = con.execute("select current_setting('memory_limit')").fetchone()[0]
    con.execute(f"set memory_limit = '{limit_within_budget(con, ceiling)}B'")
    try:
        yield
    finally:
        con.execute(f"set memory_limit = '{configured}'")
