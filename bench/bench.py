"""`make bench`: every performance figure of the project beside its target and a baseline measured in the same run.

    .venv/bin/python bench/bench.py [--quick] [--repeat N] [--slow-repeat N] [--only SECTION,...]
                                    [--backfill] [--make-test] [--workdir DIR] [--json PATH]

Sections (`--only` picks some): ingest, run, large, history, test.

* ingest  — one day of 1,000,000 request-log lines: `requests_log.ingest` beside DuckDB's own `read_json` of the
            same file (the existing bench_requests.py figures: also +100 bad lines, a naive json.loads loop and
            the whole per-request build).
* run     — `openrouter-spend run --days 14` in a fresh home (what `make run` does), with Airflow's task durations
            per day; baselines: the same command for 1 day (the fixed start-up), the same per-key /activity calls
            made from one process (what the mapped tasks buy), and the marts task the gate validates.
* large   — one day of the large organisation (2,000 keys, 200 in use, 1,000,000 logged requests) served by the
            emulator over HTTP in its own process (bench/large_server.py); first run and rerun of
            `openrouter-spend run` for that day, peak memory, API calls, the alert ledger's rows and the file
            channel's messages; baseline: the same command and server for the default organisation's day.
            `--backfill` adds 9 such days in one command.
* history — the daily build (marts, gate, rules, digest; publish, a copy of the whole file, timed beside it) on
            day 30 and day 365 of a 200-active-key organisation (bench/history.py copies one real run's day
            backwards; see there); baseline: day 30.
* test    — `make test` from a fresh clone of this checkout (only with --make-test: as long as make test takes).

Each measurement runs in a fresh process; peak memory is the largest ru_maxrss in that process tree (the kernel
reports the maximum over the process and every descendant it waited for: Airflow's `dag.test` runs tasks in
the CLI process, a few helpers run as subprocesses). The command is started from a small intermediary, not from
this process: a child's ru_maxrss starts at the high-water mark of the process it was forked from. Wall times
are medians over --repeat runs (fast ones) or --slow-repeat runs (whole pipeline runs). --quick shrinks every
size to check the harness itself (its figures are not comparable with the targets). Exit status is 0 whatever
the verdicts: this is a measurement.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "openrouter-spend")
sys.path.insert(0, str(BENCH))

SECTIONS = ("ingest", "run", "large", "history", "test")


# ----- running things ----------------------------------------------------------------------------------

# Runs a command and writes its process tree's usage to a file (argv: report path, command...). Started with
# `python -S`, it holds about 10 MiB: Linux carries the high-water mark of the process a child is forked from
# into the child's ru_maxrss (through fork and exec), so a command started straight from this process, which
# holds the large day's generated logs among other things, would report at least this process's own peak.
_MEASURED = """
import json, os, signal, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"maxrss_kib": usage.ru_maxrss, "cpu_seconds": usage.ru_utime + usage.ru_stime}, out)
code = os.waitstatus_to_exitcode(status)
if code < 0:  # die of the same signal
    if -code not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def _measured(command: list[str]) -> tuple[list[str], Path]:
    """`command` started through the intermediary, and where it reports the usage of the command's tree."""
    handle, report = tempfile.mkstemp(prefix="bench-usage-", suffix=".json")
    os.close(handle)
    return [sys.executable, "-S", "-c", _MEASURED, report, *command], Path(report)


def _usage(report: Path) -> dict:
    """Peak MiB and CPU seconds of the measured tree, from the intermediary's report (removed once read)."""
    try:
        usage = json.loads(report.read_text() or "{}")
    finally:
        report.unlink(missing_ok=True)
    return {"peak_mib": usage.get("maxrss_kib", 0) / 1024, "cpu_seconds": usage.get("cpu_seconds", 0.0)}


def _command_pid(intermediary: int, stop: threading.Event) -> int | None:
    """The pid of the command the intermediary started (its only child), once it exists."""
    children = Path(f"/proc/{intermediary}/task/{intermediary}/children")
    while not stop.wait(0.01):
        try:
            found = children.read_text().split()
        except OSError:
            return None
        if found:
            return int(found[0])
    return None


def _sample_rss(intermediary: int, samples: list, stop: threading.Event) -> None:
    """Resident memory of the measured command every 0.1 s, as (unix time, MiB): lines up with Airflow's task
    times."""
    pid = _command_pid(intermediary, stop)
    if pid is None:
        return
    status = Path(f"/proc/{pid}/status")
    while not stop.wait(0.1):
        try:
            text = status.read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                samples.append((time.time(), int(line.split()[1]) / 1024))


def run_tree(command: list[str], env: dict[str, str] | None = None, log: Path | None = None,
             cwd: Path | None = None, sample: bool = False) -> dict:
    """Run `command` to completion; wall seconds, exit code and the largest ru_maxrss in its process tree
    (with `sample`, also the top process's resident memory over time)."""
    started = time.perf_counter()
    out = open(log, "ab") if log else subprocess.DEVNULL
    samples: list = []
    stop = threading.Event()
    measured, report = _measured(command)
    try:
        process = subprocess.Popen(measured, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=cwd)
        sampler = threading.Thread(target=_sample_rss, args=(process.pid, samples, stop), daemon=True)
        if sample:
            sampler.start()
        _, status, _ = os.wait4(process.pid, 0)
        stop.set()
    finally:
        if log:
            out.close()
    result = {"seconds": time.perf_counter() - started, "code": os.waitstatus_to_exitcode(status), **_usage(report)}
    if sample:
        result["rss_samples"] = samples
    return result


def task_memory(home: Path, samples: list, run_id: str | None = None) -> dict[str, dict]:
    """Per task: resident memory of the CLI process at its start, and the highest while it ran (MiB)."""
    with sqlite3.connect(home / "airflow" / "airflow.db") as con:
        query = "select task_id, start_date, end_date from task_instance where start_date is not null"
        rows = con.execute(query + (" and run_id = ?" if run_id else ""), [run_id] if run_id else []).fetchall()
    out: dict[str, dict] = {}
    for task, start, end in rows:
        begin = datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp() if "+" not in start else \
            datetime.fromisoformat(start).timestamp()
        finish = datetime.fromisoformat(end).replace(tzinfo=UTC).timestamp() if "+" not in end else \
            datetime.fromisoformat(end).timestamp()
        inside = [mib for moment, mib in samples if begin <= moment <= finish]
        before = [mib for moment, mib in samples if moment < begin]
        if not inside:
            continue
        entry = out.setdefault(task, {"start_mib": before[-1] if before else inside[0], "peak_mib": 0.0})
        entry["peak_mib"] = max(entry["peak_mib"], max(inside))
    return out


def run_child(kind: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """One in-process measurement of this file (`--child KIND ...`) in a fresh interpreter."""
    started = time.perf_counter()
    measured, report = _measured([sys.executable, __file__, "--child", kind, *args])
    process = subprocess.Popen(measured, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    output = process.stdout.read()
    _, status, _ = os.wait4(process.pid, 0)
    usage = _usage(report)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench child {kind} {' '.join(args)} failed")
    result = json.loads(output.strip().splitlines()[-1])
    result.setdefault("seconds", time.perf_counter() - started)
    result["peak_mib"] = usage["peak_mib"]
    return result


def median_of(runs: list[dict]) -> dict:
    """The run with the median wall time, with the median time, the highest peak and every run's time."""
    middle = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {**middle, "seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mib": max(r["peak_mib"] for r in runs), "runs": [round(r["seconds"], 1) for r in runs]}


def task_durations(home: Path) -> dict[str, dict]:
    """Airflow's task durations in a CLI home: per task id, instances, total and mean seconds (mapped tasks summed)."""
    database = home / "airflow" / "airflow.db"
    with sqlite3.connect(database) as con:
        rows = con.execute("select task_id, count(*), sum(duration), count(distinct run_id), max(duration) "
                           "from task_instance where duration is not null group by task_id").fetchall()
    return {task: {"instances": n, "seconds": total, "runs": runs, "per_run": total / runs, "max": longest}
            for task, n, total, runs, longest in rows}


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def fresh_home(scratch: Path, name: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
    return home


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {"OPENROUTER_SPEND_HOME": str(home)}
    env.update(extra)
    return env


def without_key_env() -> None:
    for name in ("OPENROUTER_MANAGEMENT_KEY", "AIRFLOW_CONN_OPENROUTER_DEFAULT", "OPENROUTER_BASE_URL"):
        os.environ.pop(name, None)


# ----- section: ingestion ------------------------------------------------------------------------------

def section_ingest(args, scratch: Path) -> dict:
    import bench_requests as requests_bench

    lines = 100_000 if args.quick else 1_000_000
    os.environ["BENCH_DUCKDB_MEMORY_LIMIT"] = "700MB"
    clean, dirty = scratch / "requests-day.jsonl", scratch / "requests-day-with-bad-lines.jsonl"
    requests_bench.generate(clean, lines, 0.6)
    shutil.copyfile(clean, dirty)
    with dirty.open("a") as handle:
        handle.writelines(f'{{"generation_id": "broken-{i}", "created_at": "not a time"}}\n' for i in range(100))
    results: dict[str, list] = {}
    for _ in range(args.repeat):
        for kind in ("raw", "ingest"):
            results.setdefault(kind, []).append(requests_bench._run_child(kind, clean, scratch))
    out = {kind: median_of(runs) for kind, runs in results.items()}
    out["ingest_bad"] = median_of([requests_bench._run_child("ingest", dirty, scratch)])
    out["naive"] = median_of([requests_bench._run_child("naive", clean, scratch)])
    out["build"] = median_of([requests_bench._run_child("build", clean, scratch)])
    out["lines"] = lines
    return out


# ----- section: make run -------------------------------------------------------------------------------

def section_run(args, scratch: Path) -> dict:
    without_key_env()
    days = 3 if args.quick else 14
    out: dict = {"days": days}
    runs, one_day = [], []
    for index in range(args.slow_repeat):
        home = fresh_home(scratch, "run")
        result = run_tree([CLI, "run", "--days", str(days)], cli_env(home), log=scratch / f"run-{index}.log")
        if result["code"] != 0:
            raise SystemExit(f"openrouter-spend run --days {days} failed; see {scratch / f'run-{index}.log'}")
        result["tasks"] = task_durations(home)
        runs.append(result)
        base_home = fresh_home(scratch, "run-1day")
        one_day.append(run_tree([CLI, "run", "--days", "1"], cli_env(base_home)))
        if not args.keep_homes:
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(base_home, ignore_errors=True)
    out["run"] = median_of(runs)
    out["one_day"] = median_of(one_day)
    out["key_calls"] = median_of([run_child("key-calls") for _ in range(args.repeat)])
    return out


def child_key_calls() -> dict:
    """The per-key /activity calls of one default-organisation day from one process (no Airflow)."""
    from openrouter_emulator import EmulatorServer
    from openrouter_spend.config import settings
    from openrouter_spend.ingest.client import client_from_environment
    from openrouter_spend.ingest.extract import fetch_key_activity, fetch_snapshots, plan_key_activity
    from openrouter_spend.ingest.landing import LandingBatch

    day = yesterday()
    with tempfile.TemporaryDirectory() as home, EmulatorServer(scenario="default") as server:
        server.set_now(datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
                       + timedelta(minutes=10))
        os.environ.update(OPENROUTER_SPEND_HOME=home, OPENROUTER_BASE_URL=server.base_url,
                          OPENROUTER_MANAGEMENT_KEY=server.management_key)
        with client_from_environment() as client:
            snapshot = LandingBatch(settings.api_landing_root(), day, "bench", "snapshots")
            fetch, _ = plan_key_activity(fetch_snapshots(client, snapshot), day)
            started = time.perf_counter()
            batch = LandingBatch(settings.api_landing_root(), day, "bench", "key_activity")
            fetch_key_activity(client, batch, day, fetch, settings.ExtractionSettings.from_env().key_activity_concurrency)
            batch.commit()
            seconds = time.perf_counter() - started
    return {"seconds": seconds, "keys": len(fetch)}


# ----- section: the large organisation -----------------------------------------------------------------

class Server:
    """bench/large_server.py in its own process (so the pipeline's memory is the pipeline's)."""

    def __init__(self, scenario: str, anchor: date, log: Path):
        self.log = open(log, "ab")
        self.process = subprocess.Popen([sys.executable, str(BENCH / "large_server.py"), "--scenario", scenario,
                                         "--anchor-date", anchor.isoformat()], stdout=subprocess.PIPE,
                                        stderr=self.log, text=True)
        self.info = json.loads(self.process.stdout.readline())

    def env(self) -> dict[str, str]:
        return {"OPENROUTER_BASE_URL": self.info["base_url"], "OPENROUTER_MANAGEMENT_KEY": self.info["management_key"]}

    def _control(self, path: str, body: object | None = None):
        request = urllib.request.Request(self.info["control_url"] + path,
                                         data=None if body is None else json.dumps(body).encode(),
                                         method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def calls(self) -> dict[str, int]:
        """API calls since the last reset: /generation and everything else."""
        served = self._control("/requests")
        generation = sum(1 for r in served if r["path"].startswith("/generation"))
        return {"api": len(served) - generation, "generation": generation}

    def reset(self) -> None:
        self._control("/reset", {})

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def write_logs(scenario: str, day: date, home: Path, lines: int, anchor: date) -> dict:
    """The day's app request logs under the home's landing/requests (the generator is not what is measured)."""
    from openrouter_emulator import build_org
    from openrouter_emulator.large import write_request_log
    from openrouter_emulator.request_logs import write_emulated_logs

    started = time.perf_counter()
    org = build_org(scenario, None, anchor)
    root = home / "landing" / "requests"
    if scenario == "large":
        files = write_request_log(org, day, root, lines)
    else:
        files = write_emulated_logs(org, day, root)
    count = 0
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            count += sum(1 for _ in handle)
    return {"lines": count, "seconds": time.perf_counter() - started, "bytes": sum(p.stat().st_size for p in files)}


def ledger(home: Path, day: date) -> dict:
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = dict(con.execute("select rule_id, count(*) from marts.fct_alerts where usage_date = ? group by 1",
                                [day]).fetchall())
        messages = con.execute("select count(*) from marts.fct_alert_deliveries where usage_date = ? "
                               "and channel = 'file' and status = 'sent'", [day]).fetchone()[0]
        unused_messages = con.execute(
            "select count(*) from marts.fct_alert_deliveries join marts.fct_alerts using (alert_id) where "
            "fct_alert_deliveries.usage_date = ? and channel = 'file' and rule_id = 'unused_key'", [day]).fetchone()[0]
    return {"rows": sum(rows.values()), "unused_key_rows": rows.get("unused_key", 0), "file_messages": messages,
            "unused_key_messages": unused_messages}


def one_org_day(scenario: str, day: date, scratch: Path, lines: int, runs: int, name: str,
                keep_home: bool = False) -> dict:
    """First run and reruns of one day for one organisation against its own emulator process."""
    anchor = day + timedelta(days=1)
    home = fresh_home(scratch, name)
    server = Server(scenario, anchor, scratch / f"{name}-server.log")
    try:
        logs = write_logs(scenario, day, home, lines, anchor)
        command = [CLI, "run", "--start", day.isoformat(), "--end", day.isoformat()]
        env = cli_env(home, **server.env())
        first = run_tree(command, env, log=scratch / f"{name}.log", sample=True)
        if first["code"] != 0:
            raise SystemExit(f"{name}: first run failed; see {scratch / f'{name}.log'}")
        first["calls"] = server.calls()
        first["tasks"] = task_durations(home)
        first["task_memory"] = task_memory(home, first.pop("rss_samples"))
        reruns = []
        for _ in range(runs):
            server.reset()
            rerun = run_tree(command, env, log=scratch / f"{name}.log")
            rerun["calls"] = server.calls()
            reruns.append(rerun)
        result = {"logs": logs, "first": first, "rerun": median_of(reruns), "ledger": ledger(home, day),
                  "rerun_tasks": _rerun_tasks(home)}
    finally:
        server.stop()
        if not keep_home:
            shutil.rmtree(home, ignore_errors=True)
    return result


def _rerun_tasks(home: Path) -> dict:
    with sqlite3.connect(home / "airflow" / "airflow.db") as con:
        newest = con.execute("select run_id from dag_run order by start_date desc limit 1").fetchone()[0]
        rows = con.execute("select task_id, sum(duration) from task_instance where run_id = ? group by 1",
                           [newest]).fetchall()
    return dict(rows)


def section_large(args, scratch: Path) -> dict:
    without_key_env()
    day = yesterday()
    lines = 50_000 if args.quick else 1_000_000
    out = {"day": day.isoformat()}
    out["large"] = one_org_day("large", day, scratch, lines, args.slow_repeat, "large", args.keep_homes)
    out["small"] = one_org_day("default", day, scratch, 0, 1, "small")
    if args.backfill:
        out["backfill"] = backfill(day, scratch, lines, 3 if args.quick else 9)
    return out


def backfill(last: date, scratch: Path, lines: int, days: int) -> dict:
    anchor = last + timedelta(days=1)
    home = fresh_home(scratch, "backfill")
    server = Server("large", anchor, scratch / "backfill-server.log")
    try:
        first = last - timedelta(days=days - 1)
        for offset in range(days):
            write_logs("large", first + timedelta(days=offset), home, lines, anchor)
        result = run_tree([CLI, "run", "--start", first.isoformat(), "--end", last.isoformat()],
                          cli_env(home, **server.env()), log=scratch / "backfill.log")
        result["calls"] = server.calls()
        result["days"] = days
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return result


# ----- section: history --------------------------------------------------------------------------------

def section_history(args, scratch: Path) -> dict:
    without_key_env()
    day = yesterday()
    template = fresh_home(scratch, "history-template")
    started = time.perf_counter()
    made = run_tree([CLI, "run", "--scenario", "large", "--start", day.isoformat(), "--end", day.isoformat()],
                    cli_env(template), log=scratch / "history-template.log")
    if made["code"] != 0:
        raise SystemExit(f"history template run failed; see {scratch / 'history-template.log'}")
    out = {"template_seconds": time.perf_counter() - started, "day": day.isoformat()}
    for days in ((10, 60) if args.quick else (30, 365)):
        home = scratch / f"history-{days}"
        shutil.copytree(template, home, ignore=shutil.ignore_patterns("airflow"))
        setup = run_child("history-expand", str(home), day.isoformat(), str(days))
        builds = [run_child("daily-build", str(home), day.isoformat()) for _ in range(args.repeat)]
        out[str(days)] = {"setup": setup, "build": median_of(builds)}
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(template, ignore_errors=True)
    return out


def child_history_expand(home: str, day: str, days: str) -> dict:
    """Copy the template day backwards to `days` days, then rebuild staging and every mart."""
    os.environ["OPENROUTER_SPEND_HOME"] = home
    from history import expand_history

    from openrouter_spend.warehouse import build_staging, connect
    from openrouter_spend.warehouse.marts import rebuild_all

    with connect() as con:
        started = time.perf_counter()
        expand_history(con, date.fromisoformat(day), int(days))
        expanded = time.perf_counter() - started
        build_staging(con)
        started = time.perf_counter()
        rows = rebuild_all(con)
        rebuilt = time.perf_counter() - started
        size = {table: con.execute(f"select count(*) from {table}").fetchone()[0]
                for table in ("raw.activity", "raw.keys", "raw.request_log", "marts.fct_alerts")}
    return {"expand_seconds": expanded, "rebuild_all_seconds": rebuilt, "mart_rows": rows, "rows": size}


def child_daily_build(home: str, day: str) -> dict:
    """The daily build of `day` as the DAG runs it after loading: marts, gate, rules, publish, digest."""
    os.environ["OPENROUTER_SPEND_HOME"] = home
    from openrouter_spend import pipeline
    from openrouter_spend.context import RunContext
    from openrouter_spend.quality import QualityGateFailed

    run = RunContext.for_day(date.fromisoformat(day), f"bench__{time.time_ns()}")
    steps, step_cpu, failures = {}, {}, []
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for name, call in (("marts", lambda: pipeline.build_marts(run)),
                       ("gate", lambda: pipeline.validate_warehouse(run)),
                       ("rules", lambda: pipeline.evaluate_alerts(run)),
                       ("publish", lambda: pipeline.publish_warehouse(run)),
                       # digest and FOCUS together, as one task did before they were split
                       ("digest", lambda: (pipeline.write_digest(run), pipeline.export_focus(run)))):
        mark, mark_cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        try:
            call()
        except QualityGateFailed as exc:  # a failed gate is timed like a passed one, and reported
            failures.append(f"{name}: {str(exc).splitlines()[0]}")
        steps[name] = time.perf_counter() - mark
        step_cpu[name] = _cpu_between(mark_cpu, resource.getrusage(resource.RUSAGE_SELF))
    # CPU seconds of the process (DuckDB's threads included): what other load on a shared machine changes least
    cpu = _cpu_between(cpu_before, resource.getrusage(resource.RUSAGE_SELF))
    return {"seconds": time.perf_counter() - started, "cpu_seconds": cpu, "steps": steps, "step_cpu_seconds": step_cpu,
            "failures": failures}


def _cpu_between(before, after) -> float:
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# ----- section: make test ------------------------------------------------------------------------------

def section_test(args, scratch: Path) -> dict:
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    result = run_tree(["make", "test"], {"OPENROUTER_SPEND_HOME": str(clone / "data")}, log=scratch / "make-test.log",
                      cwd=clone)
    tail = (scratch / "make-test.log").read_text().strip().splitlines()[-1:]
    result["summary"] = tail[0] if tail else ""
    shutil.rmtree(clone, ignore_errors=True)
    return result


# ----- the table ---------------------------------------------------------------------------------------

def _s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} m {seconds % 60:04.1f} s"


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} MiB"


def rows_for(results: dict, args) -> list[tuple[str, str, str, str, str]]:
    """(figure, measured, target, baseline, verdict) rows in the order of the targets."""
    rows: list[tuple[str, str, str, str, str]] = []

    def add(figure: str, measured: str, target: str, baseline: str, ok: bool | None) -> None:
        rows.append((figure, measured, target, baseline, "—" if ok is None else ("ok" if ok else "MISSED")))

    test = results.get("test")
    if test:
        add("1 make test, fresh clone (wall)", _s(test["seconds"]), "≤ 8 m", "—", test["seconds"] <= 480)
        add("1 make test: peak, largest process", _mib(test["peak_mib"]), "—", test.get("summary", "")[:40], None)
    elif "test" in args.sections:
        add("1 make test, fresh clone (wall)", "not run (--make-test)", "≤ 8 m", "—", None)
    run = results.get("run")
    if run:
        r, tasks, days = run["run"], run["run"]["tasks"], run["days"]
        add(f"2 make run: {days} days, fresh home (wall)", _s(r["seconds"]), "≤ 2 m" if days == 14 else "(quick)",
            f"1 day: {_s(run['one_day']['seconds'])}", r["seconds"] <= 120 if days == 14 else None)
        add("2 make run: peak, largest process", _mib(r["peak_mib"]), "—", f"1 day: {_mib(run['one_day']['peak_mib'])}",
            None)
        # What the run needed of the machine, whatever else shared it (the wall time above is not).
        add("2 make run: CPU (user + sys)", _s(r.get("cpu_seconds")), "—",
            f"1 day: {_s(run['one_day'].get('cpu_seconds'))}", None)
        gate = tasks.get("validate_warehouse", {})
        marts = tasks.get("build_marts", {})
        add("2 gate (validate_warehouse) per day, mean", _s(gate.get("per_run")), "≤ 1.5 s",
            f"marts it checks: {_s(marts.get('per_run'))}", (gate.get("per_run") or 99) <= 1.5)
        add("2 gate, slowest day", _s(gate.get("max")), "—", "", None)
        keys = tasks.get("extract_key_activity", {})
        add("2 per-key extraction per day (mapped tasks)",
            f"{_s(keys.get('per_run'))} in {keys.get('instances', 0) / max(1, keys.get('runs', 1)):.0f} tasks",
            "no overhead that buys nothing", f"same calls, 1 process: {_s(run['key_calls']['seconds'])}", None)
        total = sum(t["seconds"] for t in tasks.values()) / days
        add("2 all tasks per day (sum of durations)", _s(total), "—", "", None)
    large = results.get("large")
    if large:
        lg, sm = large["large"], large["small"]
        add(f"3 large day: first run ({lg['logs']['lines']:,} logged lines)", _s(lg["first"]["seconds"]), "≤ 120 s",
            f"default org: {_s(sm['first']['seconds'])}", lg["first"]["seconds"] <= 120)
        add("3 large day: rerun", _s(lg["rerun"]["seconds"]), "≤ 45 s", f"default org: {_s(sm['rerun']['seconds'])}",
            lg["rerun"]["seconds"] <= 45)
        peak = max(lg["first"]["peak_mib"], lg["rerun"]["peak_mib"])
        add("3 large day: peak, largest process", _mib(peak), "≤ 1,024 MiB",
            f"default org: {_mib(max(sm['first']['peak_mib'], sm['rerun']['peak_mib']))}", peak <= 1024)
        calls, small_calls = lg["first"]["calls"], sm["first"]["calls"]
        add("3 large day: API calls (+ /generation)", f"{calls['api']} + {calls['generation']:,}",
            "as today (227 + 1,000)", f"default org: {small_calls['api']} + {small_calls['generation']}", None)
        rerun_calls = lg["rerun"]["calls"]
        add("3 large day: API calls on rerun", f"{rerun_calls['api']} + {rerun_calls['generation']:,}", "—", "", None)
        enrich = lg["first"]["tasks"].get("enrich_generations", {}).get("seconds")
        add("3 large day: of which /generation task", _s(enrich), "—", "1,000 calls at 10/s = 100 s floor", None)
        small_enrich = sm["first"]["tasks"].get("enrich_generations", {}).get("seconds") or 0
        add("3 large day: first run less /generation task", _s(lg["first"]["seconds"] - (enrich or 0)), "—",
            f"default org: {_s(sm['first']['seconds'] - small_enrich)}", None)
        if "backfill" in large and large["backfill"]["code"] != 0:
            bf = large["backfill"]
            add(f"3 large org: {bf['days']}-day backfill", f"not completed (exit {bf['code']})", "—", "", None)
        elif "backfill" in large:
            bf = large["backfill"]
            add(f"3 large org: {bf['days']}-day backfill", _s(bf["seconds"]), "—",
                f"{bf['days']} × first run ≈ {_s(bf['days'] * lg['first']['seconds'])}", None)
            add(f"3 large org: {bf['days']}-day backfill peak", _mib(bf["peak_mib"]), "≤ 1,024 MiB", "",
                bf["peak_mib"] <= 1024)
        led, small_led = lg["ledger"], sm["ledger"]
        add("5 large day: unused_key ledger rows", f"{led['unused_key_rows']:,}", "state changes only",
            f"default org: {small_led['unused_key_rows']}", None)
        add("5 large day: file-channel unused-key messages", f"{led['unused_key_messages']:,}", "1 per owner",
            f"default org: {small_led['unused_key_messages']}", None)
    history = results.get("history")
    if history:
        sizes = [k for k in history if k.isdigit()]
        early, late = history[sizes[0]], history[sizes[1]]
        # The target's build is marts, gate, rules and digest; publish (a copy of the whole file, so it grows
        # with the warehouse by construction) is reported beside it.
        early_build, late_build = _build_seconds(early["build"], "steps"), _build_seconds(late["build"], "steps")
        ratio = late_build / early_build
        add(f"4 daily build on day {sizes[1]} (marts, gate, rules, digest)", _s(late_build),
            f"≤ 1.2 × day {sizes[0]}", f"day {sizes[0]}: {_s(early_build)}", ratio <= 1.2)
        add(f"4 ratio day {sizes[1]} / day {sizes[0]}", f"{ratio:.2f}×", "≤ 1.2×", "", ratio <= 1.2)
        if "step_cpu_seconds" in late["build"]:
            early_cpu = _build_seconds(early["build"], "step_cpu_seconds")
            late_cpu = _build_seconds(late["build"], "step_cpu_seconds")
            add(f"4 CPU of that build on day {sizes[1]} (user + sys)", _s(late_cpu),
                f"≤ 1.2 × day {sizes[0]}", f"day {sizes[0]}: {_s(early_cpu)}", late_cpu / early_cpu <= 1.2)
        add(f"4 the build with publish on day {sizes[1]}", _s(late["build"]["seconds"]), "—",
            f"day {sizes[0]}: {_s(early['build']['seconds'])}", None)
        for step in early["build"]["steps"]:
            add(f"4   {step}", _s(late["build"]["steps"][step]), "", f"day {sizes[0]}: {_s(early['build']['steps'][step])}",
                None)
        add("4 daily build peak", _mib(late["build"]["peak_mib"]), "—", f"day {sizes[0]}: {_mib(early['build']['peak_mib'])}",
            None)
    ingest = results.get("ingest")
    if ingest:
        raw, ours, lines = ingest["raw"], ingest["ingest"], ingest["lines"]
        add(f"6 ingest {lines:,} lines (wall)", _s(ours["seconds"]), "≤ 2 × read_json",
            f"read_json: {_s(raw['seconds'])}", ours["seconds"] <= 2 * raw["seconds"])
        add("6 ingest lines/s", f"{lines / ours['seconds']:,.0f}", "", f"read_json: {lines / raw['seconds']:,.0f}", None)
        add("6 ingest peak", _mib(ours["peak_mib"]), "≤ 1,024 MiB", f"read_json: {_mib(raw['peak_mib'])}",
            ours["peak_mib"] <= 1024)
        bad = ingest["ingest_bad"]
        add("6 ingest, +100 bad lines", _s(bad["seconds"]), "", f"naive json.loads loop: {_s(ingest['naive']['seconds'])}",
            None)
        build = ingest["build"]
        add("6 whole per-request build of the day", _s(build["seconds"]), "≤ 60 s", f"peak {_mib(build['peak_mib'])}",
            build["seconds"] <= 60)
    return rows


def _build_seconds(build: dict, figure: str) -> float:
    """The target's daily build out of a daily-build result: every step but publish."""
    return sum(seconds for step, seconds in build[figure].items() if step != "publish")


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("figure", "measured", "target", "baseline (same run)", "verdict")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def print_details(results: dict) -> None:
    run = results.get("run")
    if run:
        tasks, days = run["run"]["tasks"], run["days"]
        print(f"\nmake run: Airflow task seconds per day (mean over {days} days; max):")
        for task, t in sorted(tasks.items(), key=lambda item: -item[1]["seconds"]):
            print(f"  {task:<26} {t['per_run']:6.2f}  max {t['max']:6.2f}  ({t['instances']} instances)")
    large = results.get("large")
    if large:
        print("\nlarge day, first run: Airflow task seconds (mapped tasks summed):")
        for task, t in sorted(large["large"]["first"]["tasks"].items(), key=lambda item: -item[1]["seconds"]):
            print(f"  {task:<26} {t['seconds']:6.2f}  ({t['instances']} instances)")
        memory = large["large"]["first"].get("task_memory", {})
        print("large day, first run: resident memory of the CLI process per task (MiB at start -> peak while it ran):")
        for task, m in sorted(memory.items(), key=lambda item: -item[1]["peak_mib"]):
            print(f"  {task:<26} {m['start_mib']:7.0f} -> {m['peak_mib']:7.0f}")
        print("large day, rerun: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                              sorted(large["large"]["rerun_tasks"].items(), key=lambda i: -i[1])[:6]))
        logs = large["large"]["logs"]
        print(f"large day logs: {logs['lines']:,} lines, {logs['bytes'] / 1e6:,.0f} MB, generated in "
              f"{logs['seconds']:.0f} s (not measured)")
    history = results.get("history")
    if history:
        for key, value in history.items():
            if key.isdigit():
                setup = value["setup"]
                print(f"history {key} days: expanded in {setup['expand_seconds']:.1f} s, rebuild_all "
                      f"{setup['rebuild_all_seconds']:.1f} s, rows {setup['rows']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the harness")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each fast measurement (median)")
    parser.add_argument("--slow-repeat", type=int, default=1, help="runs of each whole-pipeline measurement")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--backfill", action="store_true", help="add the large organisation's 9-day backfill")
    parser.add_argument("--make-test", action="store_true", help="run make test from a fresh clone (slow)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    parser.add_argument("--keep-homes", action="store_true", help="keep make run's and the large day's homes (with --workdir)")
    parser.add_argument("--from-json", type=Path, help="print the table of an earlier run's --json instead")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        children = {"key-calls": child_key_calls, "history-expand": child_history_expand,
                    "daily-build": child_daily_build}
        print(json.dumps(children[args.child](*rest), default=str))
        return 0
    args.sections = [s for s in args.only.split(",") if s]
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        print_table(rows_for(results, args))
        print_details(results)
        return 0
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; expected {', '.join(SECTIONS)}")
    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    started = time.perf_counter()
    try:
        for section in args.sections:
            if section == "test" and not args.make_test:
                continue
            mark = time.perf_counter()
            print(f"[bench] {section} ...", flush=True)
            results[section] = globals()[f"section_{section}"](args, scratch)
            print(f"[bench] {section} done in {_s(time.perf_counter() - mark)}", flush=True)
    finally:
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        if not args.workdir:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nopenrouter-spend bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cpus, "
          f"{'QUICK sizes, ' if args.quick else ''}median of {args.repeat} (fast) / {args.slow_repeat} (pipeline runs); "
          f"bench wall {_s(time.perf_counter() - started)}\n")
    print_table(rows_for(results, args))
    print_details(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
