"""Fault-injection harness: local stand-ins for Slack, SMTP and a hostile API, the CLI's environment, and the
hostile run that every end-to-end assertion reuses (CSV files, Slack payloads, e-mails, the Spend view)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import hostile

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

CLI = [sys.executable, "-m", "openrouter_spend.cli"]
TODAY = datetime.now(UTC).date()
DAY = TODAY - timedelta(days=1)
SLACK_ROUTES = {"finops": "OPENROUTER_SPEND_SLACK_WEBHOOK_FINOPS", "owners": "OPENROUTER_SPEND_SLACK_WEBHOOK_OWNERS",
                "data-eng": "OPENROUTER_SPEND_SLACK_WEBHOOK_DATA_ENG"}
# The poisoned lines (and one valid line beside them): each used to block every later day.
POISONED_LINES = [
    {"generation_id": "gen-poison-1", "created_at": f"{DAY}T10:00:00Z", "project": "search",
     "usage": {"cost": 1e30}},
    {"generation_id": "gen-poison-2", "created_at": f"{DAY.year + 5}-{DAY:%m}-01T10:00:00Z", "project": "search"},
    {"generation_id": "gen-poison-3", "created_at": f"{DAY}T11:00:00Z", "project": "search",
     "usage": {"prompt_tokens": -40, "completion_tokens": 10}},
    {"generation_id": "gen-fine-1", "created_at": f"{DAY}T12:00:00Z", "project": hostile.PROJECT_SQL,
     "workflow": hostile.ANNOTATION},
]
POISONED_FILE = "poisoned/day.jsonl"


class RecordingHttpServer:
    """A local HTTP server that records every request and answers with `respond(method, path, body)`."""

    def __init__(self, respond):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append({"method": method, "path": self.path, "body": body})
                status, payload = respond(method, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SlackStandIn(RecordingHttpServer):
    """Incoming webhooks: one URL per route, every payload kept."""

    def __init__(self):
        super().__init__(lambda method, path, body: (200, "ok"))

    def webhook(self, route: str) -> str:
        return f"{self.url}/services/{route}/T000/B000/secret-{route}"

    def payloads(self, route: str | None = None) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests
                if r["method"] == "POST" and (route is None or f"/services/{route}/" in r["path"])]


class Inbox:
    """aiosmtpd handler that keeps every accepted message."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment: nothing inherited that points at another home, Airflow or API."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENROUTER_", "AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME"))}
    env.update({"OPENROUTER_SPEND_HOME": str(home), "OPENROUTER_EMULATOR_ANCHOR_DATE": TODAY.isoformat(),
                "OPENROUTER_SPEND_TASK_RETRY_DELAY": "1", **extra})
    return env


def hostile_env(home: Path, **extra: str) -> dict[str, str]:
    """The hostile world's run: its own configuration (the scenario's), a hostile FOCUS billing account name."""
    return base_env(home, OPENROUTER_SPEND_FOCUS_ACCOUNT_NAME=hostile.BILLING_ACCOUNT_NAME, **extra)


def world_config(home: Path) -> Path:
    """Where `openrouter-spend run --scenario hostile` wrote the world's configuration."""
    return home / "config" / "hostile"


def prepare_home(home: Path) -> Path:
    """A fresh home with the poisoned request-log file already in the landing area."""
    target = home / "landing" / "requests" / POISONED_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(line) + "\n" for line in POISONED_LINES))
    written = datetime.combine(DAY + timedelta(days=1), datetime.min.time(), tzinfo=UTC).timestamp() + 300
    os.utime(target, (written, written))  # the same file in every home: the same quarantine reasons
    return home


def run_cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def hostile_run_args(day: date = DAY) -> list[str]:
    """One day of the hostile world, replayed (the same snapshots in every run, so runs can be compared)."""
    return ["run", "--scenario", "hostile", "--clock", "replay", "--start", day.isoformat()]


@dataclass
class HostileRun:
    """One CLI run of the hostile world for DAY, with every channel wired to a local stand-in."""

    home: Path
    result: subprocess.CompletedProcess
    concurrent: subprocess.CompletedProcess
    holder_pid: int
    slack: SlackStandIn
    inbox: Inbox
    digest_to: str = "finance@hostile.example"
    extra: dict = field(default_factory=dict)




# Logs with one row per run (a rerun adds a row by design) and the delivery ledger (attempt times), not data.
RUN_LOGS = ("build_log", "fct_quality_runs", "fct_quality_results", "fct_alert_runs", "fct_alert_deliveries")
# Columns that name the run, the moment or the home, not the data; `message` cites the quality run it relied on.
RUN_COLUMNS = ("run_id", "landing_file", "message", "quality_summary", "summary", "results_path", "data_docs_path",
               "config_dir")


def data_fingerprint(warehouse: Path) -> dict[str, tuple]:
    """Row count and a content checksum of every raw, staging, config and mart relation, times and run ids aside."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = [name for (name,) in con.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('raw', 'staging', 'config', 'marts') order by 1").fetchall()
            if name.split(".")[1] not in RUN_LOGS]
        fingerprint = {}
        for name in names:
            schema, table = name.split(".")
            columns = [f'"{column}"' for column, kind in con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position", [schema, table]).fetchall()
                if "TIMESTAMP" not in kind and not any(part in column for part in RUN_COLUMNS)]
            fingerprint[name] = con.execute(
                f'select count(*), sum(hash({", ".join(columns)})) from "{schema}"."{table}"').fetchone()
        return fingerprint
