"""Run the daily DAG for a range of UTC days through Airflow's own machinery (`dag.test()` per day).

Airflow gets its own home under `$OPENROUTER_SPEND_HOME/airflow` (SQLite metadata, migrated once), so the
CLI never touches a user's real Airflow installation; `make airflow` serves the same metadata database, so
its UI shows these runs. Each run carries the scheduler's identity for its day (logical date = the usage
day, timetable.py), so the scheduler neither repeats nor skips a day the CLI ran. One command at a time
writes a home: `home_lock` is an exclusive lock on `$OPENROUTER_SPEND_HOME/.lock` that the kernel releases
when its holder exits, even by kill -9, so a crashed run never leaves the home locked (the next run takes
the lock over). SIGTERM and SIGINT stop a run after its current task (`stop_requests_deferred`).
"""

from __future__ import annotations

import fcntl
import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path

from openrouter_spend.alerts.notifications import FAILURES_FILE
from openrouter_spend.config import settings
from openrouter_spend.context import day_start

log = logging.getLogger(__name__)

DAG_ID = "openrouter_spend_daily"


@dataclass
class DayOutcome:
    """How the run for one day ended."""

    day: date
    state: str
    run_id: str | None = None
    failed_tasks: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str | None = None  # the signal that stopped the run after its current task

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


LOCK_FILE = ".lock"
INTERRUPTED = "interrupted"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunStopped(BaseException):
    """A stop was requested while a task ran; raised once it finished (a BaseException: dag.test swallows
    every Exception a task raises)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


@contextmanager
def stop_requests_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT pending while the block runs, so `run_days` can stop between two tasks.

    Airflow's in-process task runner installs a SIGTERM handler of its own for every task (and never
    restores the previous one), which swallowed stop requests. Blocked, a signal waits until `run_days`
    looks for it after each task. Enter this before any thread starts: threads inherit the mask, and one
    that does not block the signal would take it.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        requested_stop()  # a late request must not kill the process once the mask is lifted
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def requested_stop() -> int | None:
    """The stop signal waiting for this process (consumed), or None."""
    pending = signal.sigpending() & set(STOP_SIGNALS)
    for signum in pending:
        signal.sigtimedwait([signum], 0)
    return min(pending) if pending else None


def _allow_stop_signals() -> None:
    """In a child process: take SIGTERM and SIGINT again (the blocked mask survives exec)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class HomeBusy(RuntimeError):
    """Another openrouter-spend command holds the home's lock; the message says which and since when."""


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def _describe_holder(holder: dict) -> str:
    if not holder.get("pid"):
        return "another openrouter-spend command"
    return (f"openrouter-spend {holder.get('command', 'run')} (pid {holder['pid']} on {holder.get('host', '?')}, "
            f"started {holder.get('started_at', '?')})")


@contextmanager
def home_lock(home: Path, command: str, *, wait: bool = False) -> Iterator[dict]:
    """Hold the home's exclusive lock for one command; raises HomeBusy (or waits, with `wait`) while it is taken.

    The lock is an flock on `<home>/.lock`, which records the holder's pid, host, command and start time. The
    kernel drops an flock when its process dies, so a lock left by a crashed or killed run is taken over; the
    takeover is logged with the pid of the run that did not finish.
    """
    import socket

    home.mkdir(parents=True, exist_ok=True)
    path = home / LOCK_FILE
    handle = open(path, "a+")  # never truncated before the lock is ours: it names the current holder
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise HomeBusy(f"{home} is in use by {_describe_holder(holder)}; wait for it to finish, run with "
                               f"--wait to queue behind it, or use another OPENROUTER_SPEND_HOME") from None
            log.warning("waiting for %s to release %s", _describe_holder(holder), home)
            fcntl.flock(handle, fcntl.LOCK_EX)
        previous = _holder(path)
        if previous.get("pid"):
            log.warning("took over the lock of %s, which ended without releasing it", _describe_holder(previous))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(me))
        handle.flush()
        os.fsync(handle.fileno())
        try:
            yield me
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
    finally:
        handle.close()  # releases the flock


def days_between(start: date, end: date) -> list[date]:
    """Every day from start to end inclusive."""
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def airflow_environment(home: Path) -> dict[str, str]:
    """Environment for an isolated, quiet, local Airflow under `home`."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("OPENROUTER_SPEND_AIRFLOW_LOG_LEVEL", "WARNING"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "GX_ANALYTICS_ENABLED": "False",
    }


def _template_database(version: str) -> Path:
    """Where a freshly migrated metadata database for this Airflow version is cached."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openrouter-spend"
    return cache / f"airflow-{version}-metadata.db"


def prepare_airflow_home(home: Path) -> None:
    """Create and migrate the isolated Airflow metadata database (a no-op when it is current).

    Migrating takes ~10 s, so the first migrated database is cached and later homes start from a copy.
    """
    home.mkdir(parents=True, exist_ok=True)
    marker = home / ".migrated"
    database = home / "airflow.db"
    version = metadata.version("apache-airflow-core")
    if marker.exists() and marker.read_text() == version and database.exists():
        return
    template = _template_database(version)
    if template.exists() and not database.exists():
        shutil.copyfile(template, database)
        marker.write_text(version)
        return
    env = {**os.environ, **airflow_environment(home)}
    for command in (["db", "migrate"],
                    ["pools", "set", "duckdb", "1", "Serialises access to the DuckDB warehouse file"]):
        result = subprocess.run([sys.executable, "-m", "airflow", *command], env=env, capture_output=True,
                                text=True, preexec_fn=_allow_stop_signals)
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(command[:2])} failed in {home}:\n{result.stderr[-2000:]}")
    template.parent.mkdir(parents=True, exist_ok=True)
    temporary = template.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(database, temporary)
    os.replace(temporary, template)
    marker.write_text(version)


@contextmanager
def _output_to(log_path: Path | None) -> Iterator[None]:
    """Send everything written to stdout/stderr (Airflow's task logs included) to `log_path`."""
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as target:
        os.dup2(target.fileno(), 1)
        os.dup2(target.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _failures_for(home: Path, run_id: str) -> list[dict]:
    path = home / FAILURES_FILE
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("run_id") == run_id:
            found.append(entry)
    return found


def load_dag(home: Path):
    """The daily DAG as parsed by Airflow's DagBag (import errors are fatal)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.PROJECT_ROOT / "dags"), known_pools={"default_pool", "duckdb"})
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.dags.get(DAG_ID)
    if dag is None:
        raise RuntimeError(f"DAG {DAG_ID} not found in {settings.PROJECT_ROOT / 'dags'}")
    return dag


@contextmanager
def _stop_after_each_task() -> Iterator[None]:
    """Make dag.test raise RunStopped after the task during which a stop was requested."""
    from airflow.sdk.definitions import dag as dag_module

    run_task = dag_module._run_task

    def run_task_then_check(**kwargs):
        result = run_task(**kwargs)
        signum = requested_stop()
        if signum is not None:
            raise RunStopped(signum)
        return result

    dag_module._run_task = run_task_then_check
    try:
        yield
    finally:
        dag_module._run_task = run_task


def _fail_stopped_run(logical_date: datetime) -> str | None:
    """Mark the run a stop interrupted as failed (its remaining tasks never ran); its run id."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    with create_session() as session:
        dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == DAG_ID,
                                                      DagRun.logical_date == logical_date))
        if dag_run is None:
            return None
        dag_run.set_state(DagRunState.FAILED)
        return dag_run.run_id


def _record_wall_start(logical_date: datetime, started_at: datetime) -> None:
    """Give the day's run the wall-clock time it started: dag.test records its logical date as its start, so the
    UI would show a backfilled day as having run for days."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == DAG_ID,
                                                      DagRun.logical_date == logical_date))
        if dag_run is not None and (dag_run.start_date is None or dag_run.start_date < started_at):
            dag_run.start_date = started_at


# Imported once per process by later tasks: Great Expectations by the quality gate (~7 s), matplotlib by the
# digest's charts. Tasks run in this process, so these are imported in the background while the first day's
# extraction waits on the API's rate limit, instead of in line in the first day's gate and digest.
BACKGROUND_IMPORTS = ("great_expectations", "matplotlib.backends.backend_agg")


def import_in_background(modules: tuple[str, ...] = BACKGROUND_IMPORTS) -> threading.Thread:
    """Import `modules` on a daemon thread; a failure is left to the task that imports the module itself."""
    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # the task's own import raises it where it is reported
                log.debug("background import of %s failed: %s", name, exc)

    thread = threading.Thread(target=run, name="background-imports", daemon=True)
    thread.start()
    return thread


def run_days(days: list[date], *, before_day: Callable[[date], None] | None = None,
             on_outcome: Callable[[DayOutcome], None] | None = None,
             log_path: Path | None = None) -> list[DayOutcome]:
    """Run the DAG once per day, in order, and report each outcome; never raises for a failed run.

    With `log_path`, Airflow's own output goes to that file and only `on_outcome` speaks. A stop request
    (under `stop_requests_deferred`) ends the run after the current task: that day's outcome is
    "interrupted" and the later days are not run.
    """
    import time as clock

    home = settings.paths().airflow_home
    outcomes = []
    # Airflow reads its configuration on first import, so the isolated home must be in place before.
    with _environment(airflow_environment(home)), warnings.catch_warnings(), _stop_after_each_task():
        # Airflow's in-process execution API (dag.test) trips a third-party deprecation warning per run.
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        with _output_to(log_path):
            prepare_airflow_home(home)
            dag = load_dag(home)
        import_in_background()
        for day in days:
            signum = requested_stop()
            if signum is not None:
                outcomes.append(DayOutcome(day=day, state=INTERRUPTED, stopped_by=signal.Signals(signum).name))
                if on_outcome:
                    on_outcome(outcomes[-1])
                break
            if before_day:
                before_day(day)
            started = clock.monotonic()
            # The scheduler's identity for the day (timetable.py): logical date = data interval start = day.
            logical = day_start(day)
            started_at = datetime.now(UTC)
            try:
                with _output_to(log_path):
                    dag_run = dag.test(logical_date=logical)
            except RunStopped as stop:
                _record_wall_start(logical, started_at)
                outcome = DayOutcome(day=day, state=INTERRUPTED, run_id=_fail_stopped_run(logical),
                                     seconds=clock.monotonic() - started, stopped_by=stop.signal_name)
                outcomes.append(outcome)
                if on_outcome:
                    on_outcome(outcome)
                break
            _record_wall_start(logical, started_at)
            state = str(getattr(dag_run.state, "value", dag_run.state))
            outcome = DayOutcome(day=day, state=state, run_id=dag_run.run_id, seconds=clock.monotonic() - started)
            if not outcome.succeeded:
                outcome.failed_tasks = _failures_for(home, dag_run.run_id) or [
                    {"task_id": ti.task_id, "map_index": ti.map_index, "error": f"state {ti.state}"}
                    for ti in dag_run.get_task_instances()
                    if str(getattr(ti.state, "value", ti.state)) in ("failed", "upstream_failed")
                ]
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    return outcomes



def main() -> None:
    """`python -m openrouter_spend.runner`: prepare the home's Airflow and print its environment as exports.

    scripts/airflow-standalone.sh evaluates these, so `make airflow` serves the metadata database that
    `openrouter-spend run` records its runs in.
    """
    import shlex

    home = settings.paths().airflow_home
    prepare_airflow_home(home)
    for name, value in airflow_environment(home).items():
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
