"""The daily DAG on a real distributed Airflow: CeleryExecutor, PostgreSQL, Redis, two queue-bound workers.

Mirrors docker-compose.yaml without Docker: scheduler, dag-processor, api-server, a default-queue worker
and a `warehouse`-queue worker run as subprocesses against the PostgreSQL and Redis servers of this
machine, and the DAG fetches one day from the bundled emulator over real HTTP.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path

import pytest
import requests

from openrouter_emulator.server import DEFAULT_MANAGEMENT_KEY

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "openrouter_spend_daily"
POSTGRES_ADDRESS = ("127.0.0.1", 5432)
REDIS_ADDRESS = ("127.0.0.1", 6379)

STARTUP_TIMEOUT_SECONDS = 120
RUN_TIMEOUT_SECONDS = 240
STOP_GRACE_SECONDS = 15
LOG_TAIL_LINES = 40

# Tasks the product contract pins to each side; tasks added later are checked by their pool instead.
KNOWN_WAREHOUSE_TASKS = {"prepare_warehouse", "load_raw", "build_staging", "summarize_day"}
KNOWN_HTTP_TASKS = {
    "check_activity_window", "extract_snapshots", "extract_key_activity", "reconcile_key_activity",
}
# Join points (EmptyOperator) the scheduler settles itself: no worker runs them.
JOIN_TASKS = {"alerts_settled"}

# Both workers share this machine, so each reports its own name through Airflow's hostname_callable.
HOSTNAME_MODULE = "openrouter_spend_worker_identity"
HOSTNAME_VARIABLE = "OPENROUTER_SPEND_WORKER_HOSTNAME"


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _reachable(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _require_services() -> None:
    """Skip when PostgreSQL or Redis is down on a developer machine; fail under CI, which must start them."""
    missing = [
        f"{name} on {host}:{port}"
        for name, (host, port) in (("PostgreSQL", POSTGRES_ADDRESS), ("Redis", REDIS_ADDRESS))
        if not _reachable((host, port))
    ]
    if not missing:
        return
    reason = f"cannot reach {' and '.join(missing)}, which the Celery deployment test needs"
    if _ci():
        pytest.fail(f"{reason}; under CI=true the CI script must start them")
    pytest.skip(reason)


# A database `airflow db migrate` made for this Airflow version, kept in the server and cloned for every run
# (the PostgreSQL counterpart of the SQLite template `openrouter-spend run` copies, runner.py): the
# migration is the same every time and takes half a minute of the deployment's start.
TEMPLATE_DATABASE = "openrouter_spend_it_airflow_" + re.sub(r"\W", "_", metadata.version("apache-airflow-core"))
TEMPLATE_LOCK = 0x6F72_7370  # pg_advisory_lock key: one test session at a time makes the template


def _admin_connection():
    import psycopg

    host, port = POSTGRES_ADDRESS
    return psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True)


def _database_exists(connection, name: str) -> bool:
    return connection.execute("select 1 from pg_database where datname = %s", [name]).fetchone() is not None


@contextmanager
def _postgres_database(name: str) -> Iterator[tuple[str, bool]]:
    """A fresh PostgreSQL database for Airflow's metadata, dropped afterwards, and whether it is migrated already
    (a clone of TEMPLATE_DATABASE)."""
    host, port = POSTGRES_ADDRESS
    with _admin_connection() as connection:
        connection.execute("select pg_advisory_lock(%s)", [TEMPLATE_LOCK])
        try:
            migrated = _database_exists(connection, TEMPLATE_DATABASE)
            template = f' template "{TEMPLATE_DATABASE}"' if migrated else ""
            connection.execute(f'create database "{name}"{template}')
        finally:
            connection.execute("select pg_advisory_unlock(%s)", [TEMPLATE_LOCK])
    try:
        yield f"postgres@{host}:{port}/{name}", migrated
    finally:
        with _admin_connection() as connection:
            connection.execute(f'drop database if exists "{name}" with (force)')


def _keep_as_template(name: str) -> None:
    """Copy the just-migrated database `name` to TEMPLATE_DATABASE (made under a temporary name, then renamed, so
    an interrupted copy is never taken for a template)."""
    building = f"{TEMPLATE_DATABASE}_{secrets.token_hex(4)}"
    with _admin_connection() as connection:
        connection.execute("select pg_advisory_lock(%s)", [TEMPLATE_LOCK])
        try:
            if not _database_exists(connection, TEMPLATE_DATABASE):
                connection.execute(f'create database "{building}" template "{name}"')
                connection.execute(f'alter database "{building}" rename to "{TEMPLATE_DATABASE}"')
        finally:
            connection.execute("select pg_advisory_unlock(%s)", [TEMPLATE_LOCK])


def _delete_redis_keys(prefix: str) -> None:
    import redis

    host, port = REDIS_ADDRESS
    client = redis.Redis(host=host, port=port)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class ManagedProcess:
    """One long-running component, in its own process group, logging to its own file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Deployment:
    """Every process the test started, with the environment they share."""

    root: Path
    env: dict[str, str]
    api_url: str
    processes: list[ManagedProcess] = field(default_factory=list)

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> ManagedProcess:
        """Start a component in a new session, so it and its children can be stopped as one group."""
        log_path = self.root / "logs" / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv, env={**self.env, **(extra_env or {})}, cwd=self.root, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        managed = ManagedProcess(name, process, log_path)
        self.processes.append(managed)
        return managed

    def run(self, name: str, argv: list[str], timeout: float) -> None:
        """Run a one-shot command to completion; a non-zero exit fails the test with its output."""
        log_path = self.root / "logs" / f"{name}.log"
        with open(log_path, "wb") as log:
            result = subprocess.run(argv, env=self.env, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, timeout=timeout, check=False)
        if result.returncode != 0:
            pytest.fail(f"`{' '.join(argv[2:])}` exited {result.returncode}:\n{log_path.read_text()[-3000:]}")

    def check_alive(self) -> None:
        """Fail at once, naming the component, when any long-running process has exited."""
        for managed in self.processes:
            if managed.process.poll() is not None:
                pytest.fail(f"{managed.name} exited with {managed.process.returncode}:\n{managed.tail()}")

    def report(self) -> str:
        """The tail of every component's log, for a failure message."""
        return "\n".join(f"----- {managed.name} ({managed.log_path}) -----\n{managed.tail()}"
                         for managed in self.processes)

    def stop(self) -> None:
        """SIGTERM every process group we started, then SIGKILL what is still there after the grace period."""
        for managed in self.processes:
            _signal_group(managed.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for managed in self.processes:
            try:
                managed.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for managed in self.processes:
            # Also reaps children (Celery pool processes, task supervisors) that outlived their leader.
            _signal_group(managed.process.pid, signal.SIGKILL)
            try:
                managed.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _signal_group(process_group: int, signum: int) -> None:
    try:
        os.killpg(process_group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_for(what: str, probe: Callable[[], object], deployment: Deployment, timeout: float,
              interval: float = 1.0):
    """Poll until probe() returns something truthy, failing early if a component died."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        deployment.check_alive()
        try:
            result = probe()
        except requests.RequestException as exc:
            last_error, result = exc, None
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_error})" if last_error else ""))


def _airflow_environment(root: Path, database: str, broker_prefix: str, api_port: int, emulator_url: str,
                         spend_home: Path, passwords_file: Path) -> dict[str, str]:
    """What docker-compose.yaml's x-airflow-common sets, pointed at this machine, plus fast-poll tuning."""
    inherited = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "OPENROUTER_", "_AIRFLOW"))
    }
    return {
        **inherited,
        "AIRFLOW_HOME": str(root / "airflow-home"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{database}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{database}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_ADDRESS[0]}:{REDIS_ADDRESS[1]}/0",
        # Every Redis key of this run carries the prefix, so parallel runs never take each other's tasks.
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": broker_prefix,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        # Tokens minted by the scheduler must validate in the api-server: one secret for all processes.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(64),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(root / "task-logs"),
        # Only the run the test triggers: no scheduled run for the same day racing it for the warehouse.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__PARSING_CLEANUP_INTERVAL": "600",
        "OPENROUTER_BASE_URL": emulator_url,
        "OPENROUTER_MANAGEMENT_KEY": DEFAULT_MANAGEMENT_KEY,
        "OPENROUTER_SPEND_HOME": str(spend_home),
        # A failed task should fail the run now, with its log, not after minutes of retry delays.
        "OPENROUTER_SPEND_TASK_RETRIES": "0",
        "GX_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }


def _write_worker_identity_module(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{HOSTNAME_MODULE}.py").write_text(
        '"""Airflow hostname_callable for the Celery deployment test: one name per worker process."""\n\n'
        "import os\n\n\n"
        "def hostname() -> str:\n"
        f'    return os.environ["{HOSTNAME_VARIABLE}"]\n'
    )


def _worker_environment(pythonpath: Path, hostname: str) -> dict[str, str]:
    existing = os.environ.get("PYTHONPATH")
    return {
        "PYTHONPATH": os.pathsep.join([str(pythonpath), *([existing] if existing else [])]),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{HOSTNAME_MODULE}.hostname",
        HOSTNAME_VARIABLE: hostname,
    }


class ApiClient:
    """The few Airflow REST API calls the test needs, authenticated as the simple auth manager's admin."""

    def __init__(self, base_url: str, password: str):
        self.base_url = base_url
        self.password = password
        self.session = requests.Session()

    def healthy(self) -> bool:
        response = self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        return response.status_code == 200

    def login(self) -> None:
        response = self.session.post(f"{self.base_url}/auth/token",
                                     json={"username": "admin", "password": self.password}, timeout=10)
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def create_pool(self, name: str, slots: int) -> None:
        pool = {"name": name, "slots": slots, "description": "DuckDB single writer"}
        response = self.session.post(f"{self.base_url}/api/v2/pools", json=pool, timeout=10)
        assert response.status_code in (200, 201), response.text

    def dag_parsed(self) -> bool:
        return self.session.get(f"{self.base_url}/api/v2/dags/{DAG_ID}", timeout=10).status_code == 200

    def unpause(self) -> None:
        response = self.session.patch(f"{self.base_url}/api/v2/dags/{DAG_ID}", json={"is_paused": False},
                                      timeout=10)
        response.raise_for_status()

    def trigger(self, run_id: str, logical_date: datetime) -> None:
        response = self.session.post(
            f"{self.base_url}/api/v2/dags/{DAG_ID}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": logical_date.isoformat().replace("+00:00", "Z")},
            timeout=10,
        )
        assert response.status_code in (200, 201), response.text

    def finished_state(self, run_id: str) -> str | None:
        """The run's final state, or None while it is still queued or running."""
        response = self.session.get(f"{self.base_url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", timeout=10)
        response.raise_for_status()
        state = response.json()["state"]
        return state if state in ("success", "failed") else None

    def task_instances(self, run_id: str) -> list[dict]:
        found: list[dict] = []
        while True:
            response = self.session.get(
                f"{self.base_url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": len(found)}, timeout=10,
            )
            response.raise_for_status()
            page = response.json()
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found


def _warehouse_facts(warehouse: Path, day: date) -> tuple[int, float, int]:
    """(raw.activity rows, staging spend, staging requests) for the day, read without holding the file."""
    from openrouter_spend.warehouse import connect

    with connect(warehouse, read_only=True) as con:
        raw_rows = con.execute(
            "select count(*) from raw.activity where partition_date = ?", [day]).fetchone()[0]
        spend, requests_count = con.execute(
            "select coalesce(sum(usage_usd), 0), coalesce(sum(requests), 0) from staging.stg_activity "
            "where usage_date = ?", [day],
        ).fetchone()
    return raw_rows, spend, requests_count


def test_daily_dag_runs_on_celery_with_queue_routing(tmp_path: Path) -> None:
    """One day on CeleryExecutor: HTTP tasks on the default worker, every DuckDB task on the warehouse one."""
    _require_services()
    started = time.monotonic()
    suffix = secrets.token_hex(4)
    day = datetime.now(UTC).date() - timedelta(days=1)
    logical_date = datetime.combine(day, datetime.min.time(), tzinfo=UTC)  # a run's logical date is its day
    run_id = f"celery_it__{day.isoformat()}__{suffix}"
    default_worker, warehouse_worker = f"default-worker-{suffix}", f"warehouse-worker-{suffix}"

    for folder in ("logs", "airflow-home", "task-logs"):
        (tmp_path / folder).mkdir()
    spend_home = tmp_path / "spend-home"
    identity_path = tmp_path / "worker-identity"
    _write_worker_identity_module(identity_path)
    admin_password = secrets.token_urlsafe(16)
    passwords_file = tmp_path / "airflow-home" / "passwords.json"
    passwords_file.write_text(json.dumps({"admin": admin_password}))
    api_port, emulator_port = _free_port(), _free_port()
    broker_prefix = f"openrouter-spend-it-{suffix}:"

    with _postgres_database(f"openrouter_spend_it_{suffix}") as (database, migrated):
        env = _airflow_environment(tmp_path, database, broker_prefix, api_port,
                                   f"http://127.0.0.1:{emulator_port}/api/v1", spend_home, passwords_file)
        deployment = Deployment(tmp_path, env, f"http://127.0.0.1:{api_port}")
        airflow = [sys.executable, "-m", "airflow"]
        try:
            if not migrated:
                deployment.run("db-migrate", [*airflow, "db", "migrate"], timeout=180)
                _keep_as_template(database.rsplit("/", 1)[1])
            # Anchored on D+1, so the day stays inside the emulator's 30-day window even across midnight.
            deployment.start("emulator", [sys.executable, "-m", "openrouter_spend.cli", "emulator",
                                          "--port", str(emulator_port),
                                          "--anchor-date", (day + timedelta(days=1)).isoformat()])
            deployment.start("api-server", [*airflow, "api-server", "--host", "127.0.0.1",
                                            "--port", str(api_port), "--workers", "1"])
            deployment.start("scheduler", [*airflow, "scheduler", "--skip-serve-logs"])
            deployment.start("dag-processor", [*airflow, "dag-processor"])
            for queue, hostname, concurrency in (("default", default_worker, "2"),
                                                 ("warehouse", warehouse_worker, "1")):
                deployment.start(
                    f"worker-{queue}",
                    [*airflow, "celery", "worker", "--queues", queue, "--concurrency", concurrency,
                     "--celery-hostname", f"celery@{hostname}", "--pid", str(tmp_path / f"{queue}.pid"),
                     "--skip-serve-logs", "--without-gossip", "--without-mingle"],
                    extra_env=_worker_environment(identity_path, hostname),
                )

            api = ApiClient(deployment.api_url, admin_password)
            _wait_for("the api-server health endpoint", api.healthy, deployment, STARTUP_TIMEOUT_SECONDS)
            api.login()
            api.create_pool("duckdb", slots=1)
            _wait_for(f"the dag-processor to serialize {DAG_ID}", api.dag_parsed, deployment,
                      STARTUP_TIMEOUT_SECONDS)
            api.unpause()
            api.trigger(run_id, logical_date)
            triggered = time.monotonic()
            state = _wait_for(f"run {run_id} to finish", lambda: api.finished_state(run_id), deployment,
                              RUN_TIMEOUT_SECONDS, interval=2.0)
            task_instances = api.task_instances(run_id)
            summary = "\n".join(
                f"  {ti['task_id']}[{ti['map_index']}] {ti['state']} queue={ti['queue']} pool={ti['pool']} "
                f"host={ti['hostname']}" for ti in task_instances
            )
            print(f"run {run_id} ended {state}:\n{summary}")
            assert state == "success", f"run ended {state}:\n{summary}"

            warehouse_tasks = {ti["task_id"] for ti in task_instances if ti["pool"] == "duckdb"}
            task_instances = [ti for ti in task_instances if ti["task_id"] not in JOIN_TASKS]
            http_tasks = {ti["task_id"] for ti in task_instances} - warehouse_tasks
            assert KNOWN_WAREHOUSE_TASKS <= warehouse_tasks and KNOWN_HTTP_TASKS <= http_tasks, summary
            placement = {True: ("warehouse", warehouse_worker), False: ("default", default_worker)}
            misplaced = [
                f"{ti['task_id']}[{ti['map_index']}]" for ti in task_instances
                if ti["state"] != "skipped"
                and (ti["queue"], ti["hostname"]) != placement[ti["task_id"] in warehouse_tasks]
            ]
            assert not misplaced, f"ran on the wrong queue or worker: {misplaced}\n{summary}"
            assert any(ti["task_id"] == "extract_key_activity" and ti["state"] == "success"
                       for ti in task_instances), summary

            raw_rows, spend, requests_count = _warehouse_facts(spend_home / "warehouse.duckdb", day)
            assert raw_rows > 0, f"raw.activity holds no rows for {day}"
            assert spend > 0 and requests_count > 0, (
                f"staging.stg_activity for {day}: spend {spend}, requests {requests_count}")
            finished = time.monotonic()
            print(f"Celery deployment run for {day} succeeded: {finished - started:.0f}s in all, "
                  f"{triggered - started:.0f}s until triggered, {finished - triggered:.0f}s for the run "
                  f"({len(task_instances)} task instances, ${spend:,.2f})")
        except BaseException:
            print(deployment.report())
            raise
        finally:
            deployment.stop()
            _delete_redis_keys(broker_prefix)
