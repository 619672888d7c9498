"""`openrouter-spend sql`: a read-only SQL shell on the analysts' published copy.

The install has no DuckDB command-line binary, and a CLI of another DuckDB release may not open a file this
one wrote, so the shell runs on the duckdb package the pipeline itself uses.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import duckdb

PROMPT, CONTINUATION = "spend> ", "  ...> "
TABLE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)?")
HELP = """Statements end with ';'. Commands:
  .tables          the warehouse's tables and views by schema
  .describe NAME   the columns of a table (e.g. .describe marts.fct_daily_spend)
  .csv / .table    print results as CSV / as a table (default)
  .quit            leave (or Ctrl-D)"""


class ShellError(Exception):
    """The shell cannot open the warehouse it was pointed at."""


def open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to `path`, or a ShellError saying how to get the file."""
    if not path.exists():
        raise ShellError(f"no warehouse at {path}: run `make run` (or `openrouter-spend run`) first")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise ShellError(f"cannot open {path} read-only: {exc}") from None


def _print_csv(con: duckdb.DuckDBPyConnection, sql: str, out: TextIO) -> None:
    cursor = con.execute(sql)
    if cursor.description is None:
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([column[0] for column in cursor.description])
    while batch := cursor.fetchmany(10_000):
        writer.writerows(batch)


def run_statement(con: duckdb.DuckDBPyConnection, sql: str, out: TextIO, *, as_csv: bool = False) -> None:
    """Run one statement and print its result (a statement without a result prints nothing)."""
    if as_csv:
        _print_csv(con, sql, out)
        return
    relation = con.sql(sql)
    if relation is not None:
        # DuckDB's own box rendering (the CLI's default mode): the first and last rows and the row count.
        out.write(f"{relation}\n")


def _dot_command(con: duckdb.DuckDBPyConnection, line: str, out: TextIO, state: dict) -> bool:
    """Handle a `.command`; False when the shell should stop."""
    name, _, argument = line.partition(" ")
    if name in (".quit", ".exit"):
        return False
    if name == ".tables":
        run_statement(con, "select table_schema as schema, string_agg(table_name, ', ' order by table_name) "
                           "as tables from information_schema.tables group by 1 order by 1", out,
                      as_csv=state["csv"])
    elif name == ".describe" and argument.strip():
        target = argument.strip().rstrip(";")
        if not TABLE_NAME.fullmatch(target):
            out.write(f"error: {target!r} is not a table name like marts.fct_daily_spend\n")
            return True
        try:
            run_statement(con, f"describe {target}", out, as_csv=state["csv"])
        except duckdb.Error as exc:
            out.write(f"error: {exc}\n")
    elif name in (".csv", ".table"):
        state["csv"] = name == ".csv"
    else:
        out.write(HELP + "\n")
    return True


def statements(lines: Iterable[str]) -> Iterable[str]:
    """Split input lines into complete statements at ';' (a statement may span lines)."""
    pending: list[str] = []
    for line in lines:
        pending.append(line)
        if line.rstrip().endswith(";"):
            yield "\n".join(pending).strip()
            pending = []
    if "".join(pending).strip():
        yield "\n".join(pending).strip()


def run_script(con: duckdb.DuckDBPyConnection, text: str, out: TextIO, *, as_csv: bool = False) -> None:
    """Run every statement in `text` in order; the first error stops the script (raised as duckdb.Error)."""
    for statement in statements(text.splitlines()):
        run_statement(con, statement, out, as_csv=as_csv)


def interactive(con: duckdb.DuckDBPyConnection, path: Path, out: TextIO = sys.stdout) -> None:
    """Read statements at a prompt until .quit or end of input; an error is printed and the shell goes on."""
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    out.write(f"{path} (read-only). .help for commands, statements end with ';'.\n")
    state = {"csv": False}
    pending: list[str] = []
    while True:
        try:
            line = input(CONTINUATION if pending else PROMPT)
        except EOFError:
            out.write("\n")
            return
        except KeyboardInterrupt:
            pending = []
            out.write("\n")
            continue
        if not pending and line.strip().startswith("."):
            if not _dot_command(con, line.strip(), out, state):
                return
            continue
        pending.append(line)
        if not line.rstrip().endswith(";"):
            continue
        statement, pending = "\n".join(pending), []
        try:
            run_statement(con, statement, out, as_csv=state["csv"])
        except duckdb.Error as exc:
            out.write(f"error: {exc}\n")
