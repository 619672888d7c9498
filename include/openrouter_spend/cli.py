"""`openrouter-spend` command line: run the daily DAG over a range of days, serve the emulator, summarise."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from openrouter_spend.config import settings
from openrouter_spend.context import day_end

# The embedded emulator answers "as of" this time after the day it replays, like a schedule firing at 00:10.
REPLAY_OFFSET = timedelta(minutes=10)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _key_configured() -> bool:
    return bool(os.environ.get("OPENROUTER_MANAGEMENT_KEY") or os.environ.get("AIRFLOW_CONN_OPENROUTER_DEFAULT"))


def _resolve_days(args: argparse.Namespace) -> list[date]:
    from openrouter_spend.runner import days_between

    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    if args.days is not None:
        if args.start or args.end:
            raise SystemExit("openrouter-spend run: use either --days or --start/--end, not both")
        if args.days < 1:
            raise SystemExit("openrouter-spend run: --days must be at least 1")
        return days_between(yesterday - timedelta(days=args.days - 1), yesterday)
    if not args.start:
        raise SystemExit("openrouter-spend run: give --start YYYY-MM-DD [--end YYYY-MM-DD] or --days N")
    try:
        return days_between(args.start, args.end or args.start)
    except ValueError as exc:
        raise SystemExit(f"openrouter-spend run: {exc}") from None


def _check_days(days: list[date]) -> str | None:
    """Why the days cannot be run (one line), before anything is written; None when every day has ended."""
    from openrouter_spend.preflight import InvalidDayError, check_days

    try:
        check_days(days)
    except InvalidDayError as exc:
        return str(exc)
    return None


def _check_configuration() -> str | None:
    """What is wrong with the configuration the run will use (one line), before the first API call."""
    from openrouter_spend.config.yamlnode import ConfigError
    from openrouter_spend.preflight import check_configuration

    try:
        check_configuration()
    except (ConfigError, ValueError) as exc:
        return " ".join(str(exc).split())
    return None


def _start_embedded_emulator(stack: ExitStack, scenario: str, clock: str | None = None):
    from openrouter_emulator import EmulatorServer
    from openrouter_emulator.demo import write_demo_config
    from openrouter_emulator.scenarios import get_scenario

    world = get_scenario(scenario)
    server = stack.enter_context(EmulatorServer(scenario=scenario, clock=clock))
    os.environ["OPENROUTER_BASE_URL"] = server.base_url
    os.environ["OPENROUTER_MANAGEMENT_KEY"] = server.management_key
    # The world's /generation budget per usage day (the default world's: a sample that shows coverage and the
    # outage's fallbacks, fast to fetch); worlds without one use the product default.
    if world.generation_call_budget is not None:
        os.environ.setdefault("OPENROUTER_SPEND_GENERATION_CALL_BUDGET", str(world.generation_call_budget))
    # The emulated organisation's configuration, dated around the emulator's anchor; an explicit one wins.
    if not os.environ.get("OPENROUTER_SPEND_CONFIG_DIR"):
        target = settings.spend_home() / "config" / world.name
        os.environ["OPENROUTER_SPEND_CONFIG_DIR"] = str(write_demo_config(world.name, target, server.anchor_date))
    os.environ.setdefault("OPENROUTER_SPEND_GENERATION_RPS", "50")
    print(f"No OPENROUTER_MANAGEMENT_KEY set: using the bundled emulator (scenario '{scenario}', "
          f"{server.clock_mode} clock) at {server.base_url}", flush=True)
    return server


def emulated_app_logs(emulator, days: list[date]):
    """The emulated apps' request logs, as app teams drop them: what exists before each day's run.

    On the wall clock (the real API's time) every past day's log already exists when a backfill starts, so
    all of them are written before the first run; on the replay clock each day's log appears just before
    the day is replayed, as if the run followed the day.
    """
    from openrouter_emulator.request_logs import write_emulated_logs

    written: set[date] = set()

    def before_day(day: date) -> None:
        if emulator.clock_mode == "replay":
            emulator.set_now(day_end(day) + REPLAY_OFFSET)
            pending = [day]
        else:
            pending = days
        for log_day in pending:
            if log_day not in written:
                write_emulated_logs(emulator.org, log_day)
                written.add(log_day)

    return before_day


def _day_line(index: int, total: int, outcome, detail: str) -> str:
    status = "ok" if outcome.succeeded else outcome.state.upper()
    return f"[{index:>{len(str(total))}}/{total}] {outcome.day}  {status:<7} {outcome.seconds:5.1f}s  {detail}"


def command_run(args: argparse.Namespace) -> int:
    """Run the daily DAG for each day; exit 1 when any run failed, 128 + the signal when stopped."""
    from openrouter_spend.runner import stop_requests_deferred

    # Before any thread starts (the embedded emulator's, Airflow's): SIGTERM/SIGINT then stop the run
    # between two tasks instead of being swallowed by the task runner.
    with stop_requests_deferred():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from openrouter_spend.reports import summary
    from openrouter_spend.runner import DAG_ID, INTERRUPTED, HomeBusy, home_lock, run_days

    days = _resolve_days(args)
    problem = _check_days(days)
    if problem:
        print(f"openrouter-spend run: {problem}", file=sys.stderr)
        return 2
    # An interactive backfill should report a failing day within a minute, not after the scheduler's
    # 30 s → 10 min retry ladder; an explicit setting still wins.
    os.environ.setdefault("OPENROUTER_SPEND_TASK_RETRY_DELAY", "5")
    with ExitStack() as stack:
        try:
            stack.enter_context(home_lock(settings.spend_home(), "run", wait=args.wait))
        except HomeBusy as exc:
            print(f"openrouter-spend run: {exc}", file=sys.stderr)
            return 3
        emulator = None
        if not _key_configured():
            if args.no_emulator:
                print("openrouter-spend run: no OPENROUTER_MANAGEMENT_KEY or AIRFLOW_CONN_OPENROUTER_DEFAULT "
                      "configured", file=sys.stderr)
                return 2
            emulator = _start_embedded_emulator(stack, args.scenario, args.clock)
        # The configuration is known now (an emulated world may bring its own): check it before any API call.
        problem = _check_configuration()
        if problem:
            print(f"openrouter-spend run: {problem}", file=sys.stderr)
            return 2
        before_day = emulated_app_logs(emulator, days) if emulator is not None else None

        total = len(days)
        print(f"Running {DAG_ID} for {total} day(s), {days[0]} → {days[-1]}; "
              f"home {settings.spend_home()}", flush=True)
        progress = iter(range(1, total + 1))

        def on_outcome(outcome) -> None:
            detail = summary.day_status(outcome.day) if outcome.succeeded else ""
            print(_day_line(next(progress), total, outcome, detail), flush=True)
            for failure in outcome.failed_tasks:
                where = failure["task_id"] + (f"[{failure['map_index']}]" if failure.get("map_index", -1) >= 0 else "")
                print(f"      failed task {where}: {failure.get('error_type') or ''} {failure['error']}",
                      flush=True)

        log_path = None if args.verbose else (
            settings.paths().airflow_home / "logs" / f"cli-run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log")
        outcomes = run_days(days, before_day=before_day, on_outcome=on_outcome, log_path=log_path)
    if log_path is not None:
        print(f"Airflow log: {log_path}")
    stopped = next((o for o in outcomes if o.state == INTERRUPTED), None)
    if stopped is not None:
        where = (f"after the current task of {stopped.day} (that day's run is marked failed)" if stopped.run_id
                 else f"before {stopped.day}")
        print(f"openrouter-spend run: stopped by {stopped.stopped_by} {where}; {total - len(outcomes)} later "
              f"day(s) not run; the lock on {settings.spend_home()} is released. Run the same command again "
              "to finish.", file=sys.stderr)
        return 128 + signal.Signals[stopped.stopped_by].value
    failed = [o for o in outcomes if not o.succeeded]
    print()
    print(summary.render_summary(days))
    if failed:
        print(f"\n{len(failed)} of {total} run(s) failed: {', '.join(str(o.day) for o in failed)}",
              file=sys.stderr)
        return 1
    return 0


def command_emulator(args: argparse.Namespace) -> int:
    """Serve the emulator until interrupted."""
    from openrouter_emulator import serve_forever

    serve_forever(scenario=args.scenario, host=args.host, port=args.port, seed=args.seed,
                  anchor_date=args.anchor_date, clock=args.clock)
    return 0


def command_summary(args: argparse.Namespace) -> int:
    """Print the warehouse summary."""
    from openrouter_spend.reports import summary

    print(summary.render_summary(None))
    return 0


def command_rebuild(args: argparse.Namespace) -> int:
    """Rebuild staging and every mart from raw, then republish the analysts' copy."""
    import time as clock

    from openrouter_spend.config.yamlnode import ConfigError
    from openrouter_spend.runner import HomeBusy, home_lock
    from openrouter_spend.warehouse import connect, migrate
    from openrouter_spend.warehouse.marts import rebuild_all
    from openrouter_spend.warehouse.publish import publish_warehouse

    started = clock.monotonic()
    try:
        with home_lock(settings.spend_home(), "rebuild"):
            with connect() as con:
                migrate(con)  # a rebuild may be the first command after an upgrade
                rows = rebuild_all(con, restate_config=args.restate_config)
            published = publish_warehouse()
    except ConfigError as exc:
        print(f"openrouter-spend rebuild: {exc}", file=sys.stderr)
        return 2
    except HomeBusy as exc:
        print(f"openrouter-spend rebuild: {exc}", file=sys.stderr)
        return 3
    for mart, count in rows.items():
        print(f"  {mart:<28} {count:>10,} rows")
    print(f"rebuilt in {clock.monotonic() - started:.1f}s; published {published}")
    return 0


def command_migrate(args: argparse.Namespace) -> int:
    """Apply pending warehouse migrations."""
    from openrouter_spend.runner import HomeBusy, home_lock
    from openrouter_spend.warehouse import connect, migrate

    try:
        with home_lock(settings.spend_home(), "migrate"), connect() as con:
            applied = migrate(con)
    except HomeBusy as exc:
        print(f"openrouter-spend migrate: {exc}", file=sys.stderr)
        return 3
    print(f"applied migrations: {applied or 'none pending'}")
    return 0


def command_sql(args: argparse.Namespace) -> int:
    """Query the published copy (or, with --working, the pipeline's warehouse) read-only."""
    import duckdb

    from openrouter_spend.warehouse import shell

    path = settings.paths().published / "warehouse.duckdb"
    if args.working:
        path = settings.paths().warehouse
    if args.database:
        path = args.database
    try:
        con = shell.open_read_only(path)
    except shell.ShellError as exc:
        print(f"openrouter-spend sql: {exc}", file=sys.stderr)
        return 2
    with con:
        if args.query is None and sys.stdin.isatty():
            shell.interactive(con, path)
            return 0
        text = args.query if args.query is not None else sys.stdin.read()
        try:
            shell.run_script(con, text, sys.stdout, as_csv=args.csv)
        except duckdb.Error as exc:
            print(f"openrouter-spend sql: {exc}", file=sys.stderr)
            return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openrouter-spend", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="show Airflow's own log output")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the daily DAG for each UTC day in a range, through Airflow")
    run.add_argument("--start", type=_parse_date, help="first UTC day (YYYY-MM-DD)")
    run.add_argument("--end", type=_parse_date, help="last UTC day, inclusive (default: --start)")
    run.add_argument("--days", type=int, help="instead of --start/--end: the last N completed UTC days")
    run.add_argument("--scenario", default="default",
                     help="emulator scenario when no key is configured (default: %(default)s)")
    run.add_argument("--clock", choices=("wall", "replay"), default=None,
                     help="embedded emulator's clock: wall = the real API's time (default, or "
                          "OPENROUTER_EMULATOR_CLOCK); replay = each day fetched as if just after it ended")
    run.add_argument("--no-emulator", action="store_true",
                     help="fail instead of starting the bundled emulator when no key is configured")
    run.add_argument("--wait", action="store_true",
                     help="when another command is using OPENROUTER_SPEND_HOME, wait for it instead of refusing")
    run.set_defaults(handler=command_run)

    emulator = commands.add_parser("emulator", help="serve the bundled OpenRouter emulator on 127.0.0.1")
    emulator.add_argument("--scenario", default="default")
    emulator.add_argument("--port", type=int, default=8090)
    emulator.add_argument("--host", default="127.0.0.1",
                          help="interface to listen on (default: %(default)s; 0.0.0.0 inside a container)")
    emulator.add_argument("--seed", type=int, default=None)
    emulator.add_argument("--anchor-date", type=_parse_date, default=None,
                          help="the emulator's 'today' (default: the real UTC date)")
    emulator.add_argument("--clock", choices=("wall", "replay"), default=None,
                          help="wall = the real API's time (default); replay = a settable clock (POST /_emulator/clock)")
    emulator.set_defaults(handler=command_emulator)

    summary = commands.add_parser("summary", help="print rows per table and spend per day")
    summary.set_defaults(handler=command_summary)

    rebuild = commands.add_parser("rebuild", help="rebuild staging and all marts from raw, then publish")
    rebuild.add_argument("--restate-config", action="store_true",
                         help="apply the current configuration to all history (default: each day keeps the"
                              " configuration that was in force when it was first built)")
    rebuild.set_defaults(handler=command_rebuild)

    sql = commands.add_parser("sql", help="a read-only SQL shell on the analysts' published copy")
    sql.add_argument("query", nargs="?", help="statements to run (default: read stdin, or a prompt on a terminal)")
    sql.add_argument("--csv", action="store_true", help="print results as CSV instead of tables")
    sql.add_argument("--working", action="store_true",
                     help="open the pipeline's own warehouse (read-only; fails while a run holds it)")
    sql.add_argument("--database", type=Path, help="open this DuckDB file instead")
    sql.set_defaults(handler=command_sql)

    migrate = commands.add_parser("migrate", help="apply pending warehouse migrations")
    migrate.set_defaults(handler=command_migrate)
    return parser


def _exit_without_teardown(code: int) -> None:
    """End the process with `code` once the exit handlers have run, skipping the interpreter's teardown.

    After `run`, the process holds Airflow's, Great Expectations' and matplotlib's objects: tearing the
    interpreter down runs full garbage collections over all of them (seconds of CPU) to free memory the kernel
    frees anyway. Everything the run writes is closed by then (each DuckDB connection, the home's lock); the
    exit handlers (logging's flush, Airflow's engine disposal) still run. With a non-daemon thread still
    alive, the ordinary exit (which waits for it) is kept.
    """
    import atexit
    import threading

    if any(thread.is_alive() and not thread.daemon for thread in threading.enumerate()
           if thread is not threading.main_thread()):
        return
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `openrouter-spend` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        os.environ.setdefault("OPENROUTER_SPEND_AIRFLOW_LOG_LEVEL", "INFO")
    code = args.handler(args)
    if argv is None and args.command == "run":  # the process's own command, not a caller's in-process one
        _exit_without_teardown(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
